"""The ``Task`` protocol and the task registry.

A task owns what makes it that task; the trainer, ``translrec export/evaluate/predict``, config validation
and the planner find it by name (``cfg.task``) through the registry and never ask which task it is.

Protocol (subclass ``Task``; every method has the signature below, defaults are noted)::

    name: str                                         registry key, the value of ``cfg.task``
    export_kind: str                                  label written to the export ("cross_encoder", ...)
    serves_recommend: bool = False                    ``translrec index/recommend/explain`` accept its exports

    validate(cfg) -> None                             task-specific config checks; raise ConfigError
                                                      (default: none)
    build_data(cfg, ctx: DataContext) -> TaskData      tokenizer, train data (map-style Dataset, or ShardedTrain
                                                      streamed per rank with exact resume), collate fn,
                                                      evaluator; ``ctx`` shares work between ranks
    prepare_texts(cfg) -> TextSplits                 the example texts ``translrec prepare`` tokenizes into
                                                      shards (train streamed with data.streaming=true); default:
                                                      a ConfigError saying the task does not stream
    prepare_inputs(cfg) -> dict                       the task's settings outside ``data`` that change what
                                                      prepare writes, hashed into the cache key (default: {})
    build_model(cfg, tokenizer, data: TaskData | None = None,
                state_dict: dict | None = None) -> nn.Module
                                                      ``data`` is None when rebuilding from a checkpoint
                                                      (``translrec export``); ``state_dict`` then gives shapes
    hidden_size(model) -> int                         fills DeepSpeed's "auto" bucket sizes (default: reads
                                                      ``model.config.hidden_size`` or the first ``.encoder``)
    loss(model, batch) -> Tensor                      scalar loss of one micro-batch (the model is the
                                                      prepared/wrapped one: call it, do not reach inside)
    hooks(cfg, data: TaskData) -> list[Hook]          extra trainer hooks (``training.hooks.Hook``: should_run
                                                      (step), run(trainer, step)), e.g. refreshing cached
                                                      catalog vectors every N steps (default: none)
    write_export(out_dir, state_dict, model) -> None  the weights of ``final/`` from a full state dict
                                                      (``models.export`` adds the tokenizer and translrec.yaml)
    write_interop(out_dir, cfg) -> dict               files other tools load beside the export (sentence-transformers,
                                                      AutoModelForSequenceClassification); what was written, for the
                                                      model card (default: nothing)
    usage(cfg, loads) -> list[str]                    the model card's "How to load" lines (markdown)
    read_export(model_dir, cfg) -> nn.Module          the model back from ``write_export``'s files
    evaluate_export(cfg, model, tokenizer, split, accelerator) -> dict
                                                      metrics of an export on ``split`` of cfg's data
    predict(cfg, model, tokenizer, rows, path, batch_size) -> (name, scores)
                                                      scores for ``translrec predict`` rows (default: a
                                                      ConfigError saying the task does not score rows)

``TaskData.evaluate(model, split, accelerator) -> dict`` is the evaluator used during training; every rank
calls it (it may run collectives).

Registry: ``register_task(task)`` (a name taken by another task is an error unless ``replace=True``),
``get_task(name)`` (unknown: a ConfigError with "did you mean"), ``task_names()``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from translrec_dist.errors import ConfigError
from translrec_dist.safe_io import write_tree

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from translrec_dist.run_dir import RunDir


@dataclass
class TaskData:
    """What the trainer needs from a task's data."""

    tokenizer: Any
    train: Any  # map-style datasets.Dataset, or data.streaming.ShardedTrain (streamed per rank)
    collate: Callable  # rows -> batch dict of tensors (map-style); ``.arrow`` for Arrow slices / streaming
    evaluate: Callable  # (prepared model, split, accelerator) -> metrics dict; called on every rank
    lengths: np.ndarray | None = None  # tokens per train row: length grouping of map-style data
    extra: dict = field(default_factory=dict)  # anything else the task keeps (label mean, catalog, ...)


@dataclass
class DataContext:
    """How a task's data building shares work between the ranks of a run.

    ``tokenizer(build)``: the main process builds (e.g. trains a WordPiece vocabulary) and saves it, the
    other ranks load it, so ids agree. ``tokenized(split, build)``: the main process tokenizes a map-style
    split and saves it; the others load it instead of tokenizing themselves.
    """

    run_dir: RunDir
    is_main: bool
    world: int
    resuming: bool
    barrier: Callable[[], None]
    shared_tokenizer: bool = True  # false: a pretrained tokenizer, identical on every rank without sharing

    def tokenizer(self, build: Callable[[], Any]):
        from translrec_dist.data.tokenize import load_tokenizer, save_tokenizer

        if not self.shared_tokenizer:
            return build()
        saved = self.run_dir.tokenizer
        if self.is_main and not (self.resuming and saved.is_dir()):
            save_tokenizer(build(), saved, self.run_dir.root)
        self.barrier()
        return load_tokenizer(str(saved))

    def tokenized(self, split: str, build: Callable[[], Any]):
        if self.world == 1:
            return build()
        import datasets

        path = self.run_dir.tokenized(split)
        if self.is_main:  # into a new folder, moved in without following a link (safe_io)
            write_tree(path, self.run_dir.root, lambda stage: build().save_to_disk(str(stage)))
        self.barrier()
        return datasets.load_from_disk(str(path))


class Task:
    """Base class of a task; see the module docstring for the protocol."""

    name: str = ""
    export_kind: str = ""
    serves_recommend: bool = False

    def validate(self, cfg) -> None:
        return None

    def build_data(self, cfg, ctx: DataContext) -> TaskData:
        raise NotImplementedError

    def prepare_texts(self, cfg):
        raise ConfigError(f"data.streaming: task={self.name} has no prepared shards to stream; drop "
                          f"data.streaming=true ({cfg.source})")

    def prepare_inputs(self, cfg) -> dict:
        return {}

    def build_model(self, cfg, tokenizer, data: TaskData | None = None, state_dict: dict | None = None) -> nn.Module:
        raise NotImplementedError

    def hidden_size(self, model) -> int:
        for m in (model, getattr(model, "encoder", None)):
            size = getattr(getattr(m, "config", None), "hidden_size", None)
            if size:
                return int(size)
        raise ConfigError(f"task {self.name}: cannot tell the hidden size of {type(model).__name__}; override "
                          f"Task.hidden_size")

    def loss(self, model, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def hooks(self, cfg, data: TaskData) -> list:
        return []

    def write_export(self, out_dir: Path, state_dict: dict, model) -> None:
        raise NotImplementedError

    def write_interop(self, out_dir: Path, cfg) -> dict:
        return {}

    def usage(self, cfg, loads: dict) -> list[str]:
        from translrec_dist.models.usage import encoder_usage

        return encoder_usage()

    def read_export(self, model_dir: Path, cfg) -> nn.Module:
        raise NotImplementedError

    def evaluate_export(self, cfg, model, tokenizer, split: str, accelerator) -> dict:
        raise ConfigError(f"task={self.name} has no export evaluation")

    def predict(self, cfg, model, tokenizer, rows, path: Path, batch_size: int):
        raise ConfigError(f"{path}: models of task={self.name} do not score rows; translrec predict needs a ctr or "
                          f"rating export")


def only_for(cfg, owner: str, *keys: str) -> None:
    """Options of task ``owner`` set in another task's config would be ignored silently: refuse them."""
    for key in keys:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if node:
            raise ConfigError(f"{key}: only applies to task={owner} ({cfg.source})")


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
