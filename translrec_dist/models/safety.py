"""What a shared model or checkpoint may not do: run its own code, or unpickle arbitrary objects.

``trust_remote_code`` comes only from the user (their config or ``--trust-remote-code``), never from an
export's ``translrec.yaml`` or a checkpoint's run config: a model someone sent you must not be able to
switch it on for itself.

transformers consults more than ``config.json``: ``tokenizer_config.json`` (``tokenizer_class``, ``auto_map``),
``processor_config.json``, ``preprocessor_config.json`` (feature extractors, image and video processors),
``generation_config.json``, ``special_tokens_map.json``... Any of them may name Python classes shipped beside
the weights (``auto_map``, ``custom_pipelines``), and a ``tokenizer_class`` such as ``AutoProcessor`` sends
``AutoTokenizer`` into another loader that reads those files. So every JSON file of a local model directory is
read before transformers sees it, and a remote-code key anywhere in one, or a ``tokenizer_class`` that is not a
tokenizer, is refused unless the user passed the flag (an ``Auto*`` class never is a tokenizer: always refused).
transformers itself is told never to ask on stdin ("Do you wish to run the custom code? [y/N]"), which a job
with a terminal or a server could answer: without the flag it raises instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from translrec_dist.errors import ConfigError
from translrec_dist.safe_io import check_regular

# Keys through which a JSON file names code: "module.Class" in the directory, or "repo--module.Class" elsewhere.
REMOTE_CODE_KEYS = frozenset({"auto_map", "custom_pipelines"})
# The vocabulary file: large, and never read for class names.
NOT_SCANNED = frozenset({"tokenizer.json"})
HOW_TO_TRUST = ("pass --trust-remote-code (predict, index, recommend, explain, export) or "
                "model.trust_remote_code=true (train, evaluate, prepare)")


def refuse_remote_code(path: str | Path | None, trust_remote_code: bool) -> None:
    """Raise unless ``path`` (a local model directory, or a hub id's cached copy) ships no code and names only a
    real tokenizer class, or the user trusts it."""
    never_prompt()
    directory = model_directory(path)
    if directory is None:
        return
    for file in sorted(directory.glob("*.json")):
        if file.name in NOT_SCANNED:
            continue
        content = _read_json(file)
        if not trust_remote_code:
            for key, value in _remote_code(content):
                classes = ", ".join(sorted({str(v)[:80] for v in _flatten(value)}))[:300]
                raise ConfigError(f"{file} has {key} ({classes}): loading it would run Python code that came with "
                                  f"the model. translrec does not run it unless you ask: if you trust its author, "
                                  f"{HOW_TO_TRUST}")
        if isinstance(content, dict) and "tokenizer_class" in content:
            _check_tokenizer_class(file, content["tokenizer_class"], trust_remote_code)


def never_prompt() -> None:
    """transformers asks on stdin for a model with custom code when ``trust_remote_code`` reaches it unset (some
    nested loaders drop the argument); with its time-out at 0 it raises instead, in this whole process."""
    import transformers.dynamic_module_utils as dynamic

    dynamic.TIME_OUT_REMOTE_CODE = 0


def model_directory(path: str | Path | None) -> Path | None:
    """The local directory transformers would read for ``path``: itself, or a hub id's snapshot in the cache."""
    if path is None:
        return None
    if Path(path).is_dir():
        return Path(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(path), "config.json")
    except Exception:  # not a valid hub id: nothing cached to read
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def _read_json(file: Path):
    check_regular(file, "model file")  # a FIFO or device named config.json would hang the read
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file}: not valid JSON ({str(e)[:200]}); the model directory is damaged") from None


def _remote_code(content, where: str = "", depth: int = 0):
    """(key path, value) of each remote-code key, at any depth (a nested processor config carries its own)."""
    if depth > 20:
        return
    items = content.items() if isinstance(content, dict) else enumerate(content) if isinstance(content, list) else ()
    for key, value in items:
        here = f"{where}.{key}" if where else str(key)
        if key in REMOTE_CODE_KEYS and value:
            yield here, value
        else:
            yield from _remote_code(value, here, depth + 1)


def _check_tokenizer_class(file: Path, name, trust_remote_code: bool) -> None:
    if name is None:
        return
    from transformers import PreTrainedTokenizerBase
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    shown = repr(name)[:80]
    if not isinstance(name, str) or name.startswith("Auto"):
        found = None
    else:
        try:
            found = tokenizer_class_from_name(name)
        except Exception:  # a name transformers cannot import is no tokenizer of its own
            found = None
    if isinstance(found, type) and issubclass(found, PreTrainedTokenizerBase):
        return
    if found is None and trust_remote_code and isinstance(name, str) and not name.startswith("Auto"):
        return  # the model's own tokenizer class, which the user chose to trust
    raise ConfigError(f"{file}: tokenizer_class={shown} is not a tokenizer class (AutoProcessor, AutoModel and the "
                      f"like load other files and code); translrec loads only tokenizers. Set tokenizer_class to "
                      f"the tokenizer the model was trained with (e.g. BertTokenizerFast) or remove the key")


def _flatten(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _flatten(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _flatten(v)
    elif value is not None:
        yield value


def user_trust(cfg, trust_remote_code: bool):
    """An export's config with ``model.trust_remote_code`` replaced by the user's choice."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"trust_remote_code": trust_remote_code})})
