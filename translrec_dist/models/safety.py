"""What a shared model or checkpoint may not do: run its own code, or unpickle arbitrary objects.

``trust_remote_code`` comes only from the user (their config or ``--trust-remote-code``), never from an
export's ``translrec.yaml`` or a checkpoint's run config: a model someone sent you must not be able to
switch it on for itself. An export whose ``config.json`` or ``tokenizer_config.json`` carries an
``auto_map`` (Python classes shipped beside the weights) is refused unless the user passed the flag.
"""

from __future__ import annotations

import json
from pathlib import Path

from translrec_dist.errors import ConfigError

# Files transformers reads for the classes it imports from a model directory.
AUTO_MAP_FILES = ("config.json", "tokenizer_config.json")
HOW_TO_TRUST = ("pass --trust-remote-code (predict, index, recommend, explain, export) or "
                "model.trust_remote_code=true (train, evaluate, prepare)")


def refuse_remote_code(path: str | Path | None, trust_remote_code: bool) -> None:
    """Raise unless ``path`` (a local model directory) ships no code or the user trusts it.

    Hub ids (not a local directory) are left to transformers, which never runs their code without the flag.
    """
    if trust_remote_code or path is None or not Path(path).is_dir():
        return
    for name in AUTO_MAP_FILES:
        file = Path(path) / name
        try:
            content = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file}: not valid JSON ({e}); the model directory is damaged") from None
        auto_map = content.get("auto_map") if isinstance(content, dict) else None
        if auto_map:
            classes = ", ".join(sorted({str(v) for v in _flatten(auto_map)}))
            raise ConfigError(f"{file} has an auto_map ({classes}): loading it would run Python code that came with "
                              f"the model. translrec does not run it unless you ask: if you trust its author, "
                              f"{HOW_TO_TRUST}")


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
