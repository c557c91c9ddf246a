"""translrec-dist: fine-tune pretrained language encoders into recommenders, from one CPU to many GPUs.

The Python API (``translrec_dist.api``)::

    from translrec_dist import load_config, train, evaluate, predict, export, Recommender

Names are imported on first use (PEP 562), so ``import translrec_dist`` loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "load_config": "translrec_dist.api",
    "train": "translrec_dist.api",
    "evaluate": "translrec_dist.api",
    "predict": "translrec_dist.api",
    "export": "translrec_dist.api",
    "TrainResult": "translrec_dist.api",
    "Recommender": "translrec_dist.recommend",
    "RunConfig": "translrec_dist.config.schema",
    "ConfigError": "translrec_dist.errors",
    "DataError": "translrec_dist.errors",
}
__all__ = ["ConfigError", "DataError", "Recommender", "RunConfig", "TrainResult", "__version__", "evaluate",
           "export", "load_config", "predict", "train"]  # = _API plus __version__ (a test checks)

if TYPE_CHECKING:
    from translrec_dist.api import TrainResult, evaluate, export, load_config, predict, train
    from translrec_dist.config.schema import RunConfig
    from translrec_dist.errors import ConfigError, DataError
    from translrec_dist.recommend import Recommender


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'translrec_dist' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
