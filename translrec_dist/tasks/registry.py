"""The task registry: ``cfg.task`` -> the task object. Built in: ``ctr`` and ``rating`` (cross-encoder,
``tasks.pointwise``), ``retrieval`` (bi-encoder, ``tasks.retrieval``), ``mlm`` (masked-LM pretraining,
``tasks.mlm``), ``sequential`` (SASRec-style over item text vectors, ``tasks.sequential``).

A new task is one module (a ``Task`` subclass) and one line in ``BUILT_IN`` (or ``register_task(MyTask())``).
Only the program's assembly (``translrec_dist.program``) asks the registry; lower layers are handed the task.
"""

from __future__ import annotations

import difflib

from translrec_dist.errors import ConfigError
from translrec_dist.tasks.base import Task
from translrec_dist.tasks.mlm import MlmTask
from translrec_dist.tasks.pointwise import CtrTask, RatingTask
from translrec_dist.tasks.retrieval import RetrievalTask
from translrec_dist.tasks.sequential import SequentialTask

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task, replace: bool = False) -> Task:
    """Make ``task`` available as ``cfg.task == task.name``."""
    if not task.name:
        raise ValueError(f"{type(task).__name__} has no name")
    if task.name in _REGISTRY and not replace and type(_REGISTRY[task.name]) is not type(task):
        raise ValueError(f"task {task.name!r} is already registered ({type(_REGISTRY[task.name]).__name__})")
    _REGISTRY[task.name] = task
    return task


def unregister_task(name: str) -> None:
    _REGISTRY.pop(name, None)


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task(name: str, where: str | None = None) -> Task:
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(str(name), task_names(), n=1)
    hint = f" Did you mean task={close[0]}?" if close else ""
    place = f" ({where})" if where else ""
    raise ConfigError(f"task: unknown task {name!r}{place}.{hint} Known tasks: {', '.join(task_names())}")


BUILT_IN = (CtrTask, RatingTask, RetrievalTask, MlmTask, SequentialTask)
for _task in BUILT_IN:
    register_task(_task())
