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

Every rank takes the same number of steps per epoch, computed from the manifest's shard sizes without
communication: a rank running dry before the others would hang the next collective.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.distributed import split_dataset_by_node

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

    def batches(self, *, micro: int, accum: int, rank: int, world: int, seed: int, epoch: int) -> Iterator:
        """This rank's micro-batches of the epoch as Arrow tables, exactly steps_per_epoch * accum of them.

        Arrow end to end (shuffle buffer, batching, length grouping): no Python object per row, so reading
        stays a small fraction of even a tiny model's step.
        """
        wanted = self.steps_per_epoch(micro, accum, world) * accum
        if wanted == 0:
            return
        window = LENGTH_GROUP_WINDOW if self.group_by_length else 1
        stream = self.stream(rank=rank, world=world, seed=seed, epoch=epoch)
        made = 0
        for w, chunk in enumerate(stream.iter(batch_size=window * micro)):
            if self.group_by_length:  # stable sort: equal lengths keep stream order
                order = np.argsort(pc.list_value_length(chunk.column("input_ids")).to_numpy(), kind="stable")
                chunk = chunk.take(order)
            group = [chunk.slice(i, micro) for i in range(0, len(chunk) - micro + 1, micro)]
            if self.group_by_length:
                group = [group[i] for i in np.random.default_rng([seed, epoch, rank, w]).permutation(len(group))]
            for batch in group[:wanted - made]:
                made += 1
                yield batch
            if made == wanted:
                return
        raise RuntimeError(f"rank {rank} ran out of examples at batch {made} of {wanted} in epoch {epoch}: the "
                           f"shards differ from the manifest ({self.directory})")


def stream_loader(train: ShardedTrain, collate, *, micro: int, accum: int, rank: int, world: int, seed: int,
                  epoch: int, skip_batches: int = 0) -> Iterator[dict]:
    """Collated batches for this rank and epoch, after skipping the first ``skip_batches`` (resume)."""
    if rank == 0 and epoch == 0 and skip_batches == 0 and world > 1 and not train.whole_shards(world):
        n = len(train.shard_files)
        log.warning("%d train shards do not divide %d processes: every rank reads all shards and keeps 1/%d of "
                    "the rows. Re-run prepare with data.num_shards=%d (a multiple of the world size)",
                    n, world, world, -(-n // world) * world)

    def produce():
        for i, rows in enumerate(train.batches(micro=micro, accum=accum, rank=rank, world=world, seed=seed,
                                               epoch=epoch)):
            if i >= skip_batches:
                yield i, rows.column("example_id").to_pylist(), collate.arrow(rows)

    trace = None
    if train.trace_dir is not None:
        train.trace_dir.mkdir(parents=True, exist_ok=True)
        trace = open(train.trace_dir / f"rank{rank}.txt", "a")  # noqa: SIM115 - closed below
    try:
        for i, ids, batch in produce():
            if trace is not None:  # written when the loop takes the batch, not when it is read ahead
                trace.write(f"{epoch} {i} {' '.join(map(str, ids))}\n")
                trace.flush()
            yield batch
    finally:
        if trace is not None:
            trace.close()
