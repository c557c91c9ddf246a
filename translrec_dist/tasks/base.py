"""What a task is: three roles, each narrow, and the data it hands the trainer.

A task owns what makes it that task. The program (``translrec_dist.program``) finds it by name in the
registry (``tasks.registry``) and hands it to the trainer, to export writing and reading, and to serving;
none of them asks which task it is.

**Training** (every task)::

    name: str                                         registry key, the value of ``cfg.task``
    validate(cfg) -> None                             task-specific config checks; raise ConfigError
    build_data(cfg, ctx: DataContext) -> TaskData     tokenizer, train data (map-style Dataset, or ShardedTrain
                                                      streamed per rank with exact resume), collate fn,
                                                      evaluator; ``ctx`` shares work between ranks
    prepare_texts(cfg) / prepare_inputs(cfg)          what ``translrec prepare`` shards, and the settings outside
                                                      ``data`` hashed into its cache key (default: no streaming)
    build_model(cfg, tokenizer, data: TaskData | None = None, state_dict: dict | None = None) -> nn.Module
                                                      ``data`` is None when rebuilding from a checkpoint
                                                      (``translrec export``); ``state_dict`` then gives shapes
    hidden_size(model) -> int                         fills DeepSpeed's "auto" bucket sizes
    loss(model, batch) -> Tensor                      scalar loss of one micro-batch (the wrapped model: call it)
    batch_size(batch) -> (tokens, samples)            what the trainer's throughput meter counts (default: the
                                                      attention mask's ones and its rows; no fake batch keys)
    hooks(cfg, data: TaskData) -> list[Hook]          extra trainer hooks (default: none)

**Export adapter** (tasks whose runs export: write and read with the config)::

    write_export(out_dir, state_dict, model, cfg, data: TaskData | None) -> None
                                                      the weights of ``final/`` (``models.export`` adds the
                                                      tokenizer, translrec.yaml, interop files, the card);
                                                      ``data`` is the run's when at hand, None from a checkpoint
    read_export(model_dir, cfg) -> nn.Module          the model back from ``write_export``'s files
    write_interop(out_dir, cfg) -> dict               files other tools load beside the export (default: none)
    usage(cfg, loads) -> list[str]                    the model card's "How to load" lines (markdown)
    evaluate_export / predict                         metrics of an export; scores of ``translrec predict`` rows

**Scorer** (tasks that recommend items; ``serves_recommend = True``)::

    scorer(model, tokenizer, cfg, model_dir, device) -> Scorer
                                                      what ``serving.Recommender`` calls (see ``Scorer``)

``TaskData.evaluate(model, split, accelerator) -> dict`` is the evaluator used during training; every rank
calls it (it may run collectives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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
    extra: Any = None  # what the task keeps for its model and export: each task's own typed dataclass


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


class Scorer(Protocol):
    """What serving calls to recommend (``serving.recommender.Recommender``), one per task that recommends, in
    the spirit of RecBole's ``predict`` / ``full_sort_predict``. Scores are inner products of ``user_vectors``
    with ``search_vectors(items)``, so one exact or faiss index serves every task.

    A history is a user's items oldest first, each ``(text, row)``: ``row`` is the item's row in the index, or
    -1 for an item the index does not hold (given as text only)."""

    dim: int  # width of the vectors ``item_vectors`` returns (an index of another width is refused)
    history_length: int  # the most recent history items a user vector reads

    def catalog(self, source: Callable[[], tuple]) -> tuple[list[str], list[str]]:
        """(ids, texts) of the training catalog in the model's order; ``source()``: (interactions, items, texts)
        of the export's data config, for tasks whose export keeps no catalog."""

    def item_vectors(self, texts: list[str], positions: np.ndarray) -> torch.Tensor:
        """[N x dim] item vectors; ``positions``: training catalog positions, -1 for an item known by text only."""

    def search_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """The index's keys for ``item_vectors`` (what queries are multiplied with)."""

    def user_vectors(self, histories: list[list[tuple[str, int]]], items: torch.Tensor) -> torch.Tensor:
        """[B x dim'] queries, one per non-empty history; ``items``: the index's item vectors."""


class Task:
    """Base class of a task; see the module docstring for the roles."""

    name: str = ""
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

    def planned_parameters(self, cfg, encoder_params: int, encoder_config) -> int:
        """Parameters the run trains, for ``translrec plan``: the encoder's (counted on the meta device) and what
        the task builds around it (default: the encoder alone)."""
        return encoder_params

    def batch_size(self, batch: dict) -> tuple[torch.Tensor | int, int]:
        """(tokens, samples) of a micro-batch, for the throughput meter."""
        mask = batch["attention_mask"]
        return mask.sum(), len(mask)

    def hooks(self, cfg, data: TaskData) -> list:
        return []

    @property
    def exports(self) -> bool:
        """Whether the task has an export adapter (it overrides ``write_export``); a task that only trains
        leaves no ``final/``."""
        return type(self).write_export is not Task.write_export

    def write_export(self, out_dir: Path, state_dict: dict, model, cfg, data: TaskData | None = None) -> None:
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

    def scorer(self, model, tokenizer, cfg, model_dir: Path, device: str | None = None) -> Scorer:
        raise ConfigError(f"{model_dir}: models of task={self.name} do not recommend items")

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
