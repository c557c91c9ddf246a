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
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
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
        ds.set_epoch(epoch)
        return ds

    def batches(self, *, micro: int, accum: int, rank: int, world: int, seed: int, epoch: int) -> Iterator[list]:
        """This rank's micro-batches of the epoch as lists of rows, exactly steps_per_epoch * accum of them."""
        wanted = self.steps_per_epoch(micro, accum, world) * accum
        rows = iter(self.stream(rank=rank, world=world, seed=seed, epoch=epoch))
        made = 0
        window = LENGTH_GROUP_WINDOW if self.group_by_length else 1
        for w in range(-(-wanted // window)):
            chunk = [row for _, row in zip(range(min(window, wanted - made) * micro), rows, strict=False)]
            group = [chunk[i:i + micro] for i in range(0, len(chunk), micro)]
            if self.group_by_length:
                chunk.sort(key=lambda r: len(r["input_ids"]))  # stable: ties keep stream order
                group = [chunk[i:i + micro] for i in range(0, len(chunk), micro)]
                order = np.random.default_rng([seed, epoch, rank, w]).permutation(len(group))
                group = [group[i] for i in order]
            for batch in group:
                if len(batch) < micro:
                    raise RuntimeError(f"rank {rank} ran out of examples at batch {made} of {wanted} in epoch "
                                       f"{epoch}: the shards differ from the manifest ({self.directory})")
                made += 1
                yield batch


def stream_loader(train: ShardedTrain, collate, *, micro: int, accum: int, rank: int, world: int, seed: int,
                  epoch: int, skip_batches: int = 0, prefetch: int = 4) -> Iterator[dict]:
    """Collated batches for this rank and epoch, after skipping the first ``skip_batches`` (resume).

    Reading and collating run ``prefetch`` batches ahead in a thread (one producer, so the order is
    unchanged), overlapping the model's step instead of adding to it.
    """
    if rank == 0 and epoch == 0 and skip_batches == 0 and world > 1 and not train.whole_shards(world):
        n = len(train.shard_files)
        log.warning("%d train shards do not divide %d processes: every rank reads all shards and keeps 1/%d of "
                    "the rows. Re-run prepare with data.num_shards=%d (a multiple of the world size)",
                    n, world, world, -(-n // world) * world)

    def produce():
        for i, rows in enumerate(train.batches(micro=micro, accum=accum, rank=rank, world=world, seed=seed,
                                               epoch=epoch)):
            if i >= skip_batches:
                yield i, [r["example_id"] for r in rows], collate(rows)

    trace = None
    if train.trace_dir is not None:
        train.trace_dir.mkdir(parents=True, exist_ok=True)
        trace = open(train.trace_dir / f"rank{rank}.txt", "a")  # noqa: SIM115 - closed below
    try:
        for i, ids, batch in read_ahead(produce(), prefetch):
            if trace is not None:  # written when the loop takes the batch, not when it is read ahead
                trace.write(f"{epoch} {i} {' '.join(map(str, ids))}\n")
                trace.flush()
            yield batch
    finally:
        if trace is not None:
            trace.close()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def read_ahead(items: Iterator, depth: int) -> Iterator:
    """Iterate ``items`` in a background thread, at most ``depth`` ahead; errors surface in the consumer."""
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failed(e))

    thread = threading.Thread(target=work, name="translrec-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
