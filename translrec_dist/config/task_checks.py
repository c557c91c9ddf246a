"""Every check that depends on ``cfg.task``, in one place.

These move to the task registry (each task's ``validate(cfg)``); this module goes away then. Until that
merge, nothing else in the config package compares ``cfg.task`` with a name.
"""

from __future__ import annotations

from translrec_dist.config.schema import RunConfig
from translrec_dist.errors import ConfigError

BUILTIN_TASKS = ("ctr", "rating", "retrieval", "mlm")


def builtin_task_checks(cfg: RunConfig) -> None:
    def fail(key: str, msg: str):
        raise ConfigError(f"{key}: {msg} ({cfg.source})")

    m, d, t, task = cfg.model, cfg.data, cfg.train, cfg.task
    if task not in BUILTIN_TASKS:
        raise ConfigError(f"task: {task!r} is not one of {', '.join(BUILTIN_TASKS)} ({cfg.source}). "
                          f"Set e.g. task={BUILTIN_TASKS[0]}")
    if m.item_id_embeddings and task != "retrieval":
        fail("model.item_id_embeddings", "only applies to task=retrieval")
    if task in ("retrieval", "mlm") and d.format == "text_label":
        fail("task", f"task={task} needs item texts; use a recommendation format (e.g. synthetic, recbole)")
    if task == "mlm" and m.init_from is not None:
        fail("model.init_from", "task=mlm starts from model.name_or_path or model.tiny, not a translrec export")
    if d.format == "text_label" and task != "ctr":
        fail("task", "data.format=text_label holds binary labels; use task=ctr")
    no_negatives = d.negatives_per_positive == 0 and d.positive_threshold is None
    if task == "ctr" and d.format != "text_label" and no_negatives:
        fail("data.negatives_per_positive", "ctr with no negatives and no positive_threshold has only one class; "
             "set data.negatives_per_positive>=1")
    if t.gather_negatives and task != "retrieval":
        fail("train.gather_negatives", "only applies to task=retrieval")
