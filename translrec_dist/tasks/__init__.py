"""Tasks: what a run trains (``cfg.task``), found by name in the registry. See ``tasks.base`` for the protocol.

Built in: ``ctr`` and ``rating`` (cross-encoder, ``tasks.pointwise``), ``retrieval`` (bi-encoder,
``tasks.retrieval``), ``mlm`` (masked-LM pretraining, ``tasks.mlm``), ``sequential`` (SASRec-style over
item text vectors, ``tasks.sequential``). A new task subclasses ``Task`` and
calls ``register_task(MyTask())``; nothing else needs to change.
"""

from __future__ import annotations

from translrec_dist.tasks.base import (
    DataContext,
    Task,
    TaskData,
    get_task,
    register_task,
    task_names,
    unregister_task,
)
from translrec_dist.tasks.mlm import MlmTask
from translrec_dist.tasks.pointwise import CtrTask, RatingTask
from translrec_dist.tasks.retrieval import RetrievalTask
from translrec_dist.tasks.sequential import SequentialTask

for _task in (CtrTask(), RatingTask(), RetrievalTask(), MlmTask(), SequentialTask()):
    register_task(_task)


def validate_task(cfg) -> None:
    """Config validation's part that belongs to the task: the name (with "did you mean") and task.validate."""
    get_task(cfg.task, cfg.source).validate(cfg)


__all__ = ["DataContext", "Task", "TaskData", "get_task", "register_task", "task_names", "unregister_task",
           "validate_task"]
