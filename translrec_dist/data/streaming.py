"""The prepared train shards streamed per rank, with exact mid-epoch resume.

Each rank reads whole shards (``split_dataset_by_node`` when the shard count is a multiple of the world
size; otherwise every rank reads everything and keeps 1/W of the rows, which is correct but W times the
I/O, so we warn). The order of an epoch is a pure function of (files, seed, epoch, rank, world size):
``shuffle`` + ``set_epoch`` re-seed the shard order and the shuffle buffer per epoch.

Exact resume: ``datasets``' own ``state_dict`` replays within a shard and loses the shuffle buffer
(datasets 8308), so instead the position is the number of batches this rank consumed in the epoch, which
the step number fixes (every rank takes the same number of steps). A resumed rank regenerates the same
deterministic stream and skips that many batches without collating them: it sees exactly the examples it
had not seen yet, in the same batches. Changing the world size mid-epoch would change every rank's stream,
so the training loop refuses it (resume with the same number of processes).

Raw-text shards (``data.pretokenize=false``) go through the same stream; each window of rows is tokenized
just before it is cut into batches (in DataLoader workers when data.num_workers > 0), so the batches equal
those of the pretokenized shards, length grouping included (it sorts the freshly tokenized window).

Every rank takes the same number of steps per epoch, computed from the manifest's shard sizes without
communication: a rank running dry before the others would hang the next collective.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch.utils.data
from datasets.distributed import split_dataset_by_node

from translrec_dist import safe_io

log = logging.getLogger(__name__)
LENGTH_GROUP_WINDOW = 64  # batches sorted by length together; more: less padding, less randomness


@dataclass
class ShardedTrain:
    """The train split of a prepared directory."""

    directory: Path
    shard_files: list[str]
    shard_sizes: list[int]
    shuffle_buffer: int
    group_by_length: bool = False
    trace_dir: Path | None = None  # when set, each rank appends the example ids it consumes (tests, debugging)
    encode: Callable | None = None  # raw-text shards (data.pretokenize=false): Arrow rows -> rows with token ids

    def __len__(self) -> int:
        return sum(self.shard_sizes)

    def whole_shards(self, world: int) -> bool:
        return len(self.shard_files) % world == 0

    def min_examples_per_rank(self, world: int) -> int:
        """The fewest examples any rank can get in any epoch (shard order changes per epoch)."""
        if self.whole_shards(world):
            per_rank = len(self.shard_files) // world
            return int(sum(sorted(self.shard_sizes)[:per_rank]))
        return len(self) // world

    def steps_per_epoch(self, micro: int, accum: int, world: int) -> int:
        return self.min_examples_per_rank(world) // (micro * accum)

    def stream(self, *, rank: int, world: int, seed: int, epoch: int) -> datasets.IterableDataset:
        files = [str(self.directory / f) for f in self.shard_files]
        ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True,
                                   cache_dir=str(self.directory / ".hf"))
        # One input shard at a time: datasets' default interleaves up to 10 shards with threads and sleeps 5 s
        # on shutdown (apache/arrow 45214), per rank and epoch. Prepare already shuffled rows across shards.
        ds = ds.shuffle(seed=seed, buffer_size=self.shuffle_buffer, max_buffer_input_shards=1)
        if world > 1:
            ds = split_dataset_by_node(ds, rank=rank, world_size=world)
        ds = ds.with_format("arrow")
        ds.set_epoch(epoch)  # last: with_format returns a copy that does not keep the epoch
        return ds

    def windows(self, *, micro: int, accum: int, rank: int, world: int, seed: int, epoch: int) -> Iterator:
        """(window index, index of its first micro-batch, micro-batches it gives, rows) of this rank's epoch.

        Rows are read in windows (LENGTH_GROUP_WINDOW micro-batches with length grouping, else one) and cut
        into micro-batches by ``cut``; together the windows give exactly steps_per_epoch * accum micro-batches.
        Nothing is tokenized here, so a skipped window (resume, another worker's) costs only the read.
        """
        wanted = self.steps_per_epoch(micro, accum, world) * accum
        if wanted == 0:
            return
        window = LENGTH_GROUP_WINDOW if self.group_by_length else 1
        stream = self.stream(rank=rank, world=world, seed=seed, epoch=epoch)
        made = 0
        for w, chunk in enumerate(stream.iter(batch_size=window * micro)):
            take = min(len(chunk) // micro, wanted - made)
            yield w, made, take, chunk
            made += take
            if made == wanted:
                return
        raise RuntimeError(f"rank {rank} ran out of examples at batch {made} of {wanted} in epoch {epoch}: the "
                           f"shards differ from the manifest ({self.directory})")

    def cut(self, w: int, take: int, chunk, *, micro: int, rank: int, seed: int, epoch: int) -> list:
        """The first ``take`` micro-batches (Arrow tables with token ids) of window ``w``'s rows."""
        if self.encode is not None:  # raw-text shards: tokenize the window in one batched call
            chunk = self.encode(chunk)
        if self.group_by_length:  # stable sort: equal lengths keep stream order
            order = np.argsort(pc.list_value_length(chunk.column("input_ids")).to_numpy(), kind="stable")
            chunk = chunk.take(order)
        group = [chunk.slice(i, micro) for i in range(0, len(chunk) - micro + 1, micro)]
        if self.group_by_length:
            group = [group[i] for i in np.random.default_rng([seed, epoch, rank, w]).permutation(len(group))]
        return group[:take]

    def batches(self, *, micro: int, accum: int, rank: int, world: int, seed: int, epoch: int) -> Iterator:
        """This rank's micro-batches of the epoch as Arrow tables, exactly steps_per_epoch * accum of them.

        Arrow end to end (shuffle buffer, batching, length grouping): no Python object per row, so reading
        stays a small fraction of even a tiny model's step.
        """
        for w, _, take, chunk in self.windows(micro=micro, accum=accum, rank=rank, world=world, seed=seed,
                                              epoch=epoch):
            yield from self.cut(w, take, chunk, micro=micro, rank=rank, seed=seed, epoch=epoch)


def collated_windows(train: ShardedTrain, collate, *, micro: int, accum: int, rank: int, world: int, seed: int,
                     epoch: int, skip_batches: int, worker: int = 0, workers: int = 1) -> Iterator[list]:
    """For every ``workers``-th window from ``worker``: its [(batch index, example ids, collated batch)] after
    ``skip_batches``. One item per window, even an empty one, so that a DataLoader taking its workers' items
    round-robin returns the windows in stream order."""
    for w, first, take, chunk in train.windows(micro=micro, accum=accum, rank=rank, world=world, seed=seed,
                                               epoch=epoch):
        if w % workers != worker:
            continue
        if first + take <= skip_batches:
            yield []
            continue
        group = train.cut(w, take, chunk, micro=micro, rank=rank, seed=seed, epoch=epoch)
        yield [(first + j, rows.column("example_id").to_pylist(), collate.arrow(rows))
               for j, rows in enumerate(group) if first + j >= skip_batches]


class _WorkerWindows(torch.utils.data.IterableDataset):
    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        return collated_windows(**self.kwargs, worker=info.id, workers=info.num_workers)


def _as_is(item):
    return item


def stream_loader(train: ShardedTrain, collate, *, micro: int, accum: int, rank: int, world: int, seed: int,
                  epoch: int, skip_batches: int = 0, num_workers: int = 0) -> Iterator[dict]:
    """Collated batches for this rank and epoch, after skipping the first ``skip_batches`` (resume).

    ``num_workers`` > 0: DataLoader workers tokenize (raw-text shards) and collate whole windows, each taking
    every num_workers-th; every worker reads the whole stream (cheap Arrow) and skips the others' windows.
    """
    if rank == 0 and epoch == 0 and skip_batches == 0 and world > 1 and not train.whole_shards(world):
        n = len(train.shard_files)
        log.warning("%d train shards do not divide %d processes: every rank reads all shards and keeps 1/%d of "
                    "the rows. Re-run prepare with data.num_shards=%d (a multiple of the world size)",
                    n, world, world, -(-n // world) * world)
    args = dict(train=train, collate=collate, micro=micro, accum=accum, rank=rank, world=world, seed=seed,
                epoch=epoch, skip_batches=skip_batches)
    if num_workers > 0:
        # The workers' tokenizers must not each start a thread pool (oversubscription, fork warnings).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # batch_size=None: items are whole windows; the DataLoader returns them in worker round-robin order,
        # which is stream order (see collated_windows). A private generator keeps the global RNG untouched.
        windows = torch.utils.data.DataLoader(_WorkerWindows(**args), batch_size=None, num_workers=num_workers,
                                              collate_fn=_as_is, generator=torch.Generator().manual_seed(seed))
    else:
        windows = collated_windows(**args)

    trace = None
    if train.trace_dir is not None:
        trace = safe_io.open_append(train.trace_dir / f"rank{rank}.txt", train.trace_dir.parent)  # closed below
    try:
        for window in windows:
            for i, ids, batch in window:
                if trace is not None:  # written when the loop takes the batch, not when it is read ahead
                    trace.write(f"{epoch} {i} {' '.join(map(str, ids))}\n")
                    trace.flush()
                yield batch
    finally:
        if trace is not None:
            trace.close()
