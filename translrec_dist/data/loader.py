"""Per-rank data loaders. This module is the single owner of the split across ranks.

Training: each epoch is a seeded permutation cut to a whole number of optimizer steps; optimizer step
``t`` consumes global micro-batches ``[t*A*W, (t+1)*A*W)`` and rank ``r`` takes every W-th of them. So a
run with W processes sees exactly the same global batches as one process with a W-times larger micro-batch,
and resuming at step ``t`` is a matter of skipping ``(t mod steps_per_epoch) * A`` local batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from translrec_dist.data.streaming import LENGTH_GROUP_WINDOW, ShardedTrain, stream_loader


def steps_per_epoch(num_examples: int, micro: int, accum: int, world: int) -> int:
    return num_examples // (micro * accum * world)


def train_steps_per_epoch(ds, micro: int, accum: int, world: int) -> int:
    """Optimizer steps per epoch, the same on every rank, for a map-style split or streamed shards."""
    if isinstance(ds, ShardedTrain):
        return ds.steps_per_epoch(micro, accum, world)
    return steps_per_epoch(len(ds), micro, accum, world)


class _Rows(Dataset):
    def __init__(self, ds, indices: np.ndarray):
        self.ds, self.indices = ds, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.ds[int(self.indices[i])]


class _ArrowBatches(Dataset):
    def __init__(self, ds, batches: np.ndarray, collate):
        self.ds, self.batches, self.collate = ds.with_format("arrow"), batches, collate

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.collate.arrow(self.ds[self.batches[i].tolist()])


def token_lengths(ds) -> np.ndarray:
    """Tokens per row of a tokenized map-style split (the key of length grouping)."""
    return np.fromiter(map(len, ds["input_ids"]), dtype=np.int64, count=len(ds))


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def group_by_length(order: np.ndarray, lengths: np.ndarray, global_batch: int, seed: int, epoch: int) -> np.ndarray:
    """Sort windows of LENGTH_GROUP_WINDOW global batches by length, then shuffle the batches in each window.

    Works on global batches (micro x processes), so W processes still see the batches of one process with a
    W-times larger micro-batch; less padding, a little less randomness.
    """
    window = LENGTH_GROUP_WINDOW * global_batch
    out = []
    for w, start in enumerate(range(0, len(order), window)):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")].reshape(-1, global_batch)
        out.append(chunk[np.random.default_rng([seed, epoch, w]).permutation(len(chunk))].reshape(-1))
    return np.concatenate(out) if out else order


def train_loader(ds, collate, *, micro: int, accum: int, rank: int, world: int, seed: int, epoch: int,
                 skip_batches: int = 0, num_workers: int = 0, lengths: np.ndarray | None = None):
    """This rank's micro-batches for ``epoch``, starting after ``skip_batches`` of them.

    ``lengths`` (tokens per row) turns on length grouping (``data.group_by_length``).
    """
    if isinstance(ds, ShardedTrain):  # streamed shards: the split across ranks is by shard (see streaming)
        return stream_loader(ds, collate, micro=micro, accum=accum, rank=rank, world=world, seed=seed, epoch=epoch,
                             skip_batches=skip_batches, num_workers=num_workers)
    steps = steps_per_epoch(len(ds), micro, accum, world)
    order = epoch_permutation(len(ds), seed, epoch)[: steps * accum * world * micro]
    if lengths is not None:
        order = group_by_length(order, lengths, micro * world, seed, epoch)
    batches = order.reshape(-1, micro)[rank::world][skip_batches:]
    # A private generator: creating the iterator must not draw from the global torch RNG, or a resumed
    # run's dropout masks would drift from the uninterrupted run's.
    generator = torch.Generator().manual_seed(seed + epoch)
    if hasattr(collate, "arrow") and hasattr(ds, "with_format"):  # one Arrow read per micro-batch, not a dict per row
        return DataLoader(_ArrowBatches(ds, batches, collate), batch_size=None, shuffle=False,
                          num_workers=num_workers, generator=generator)
    return DataLoader(_Rows(ds, batches.reshape(-1)), batch_size=micro, shuffle=False, collate_fn=collate,
                      num_workers=num_workers, generator=generator)


def eval_loader(ds, collate, *, batch_size: int, rank: int, world: int) -> DataLoader:
    """Every rank gets the same number of rows (padding rows repeat row 0 and are flagged with id -1),
    because under ZeRO-3 each forward is a collective: unequal batch counts would hang."""
    n = len(ds)
    per_rank = -(-n // world)
    idx = np.arange(rank, per_rank * world, world)
    valid = idx < n
    loader = DataLoader(_Rows(ds, np.where(valid, idx, 0)), batch_size=batch_size, shuffle=False,
                        collate_fn=collate, generator=torch.Generator())
    return _FlagPadding(loader, valid, batch_size)


class _FlagPadding:
    def __init__(self, loader, valid: np.ndarray, batch_size: int):
        self.loader, self.valid, self.batch_size = loader, torch.as_tensor(valid), batch_size

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            keep = self.valid[i * self.batch_size: i * self.batch_size + len(batch["example_id"])]
            batch["example_id"] = torch.where(keep, batch["example_id"], torch.full_like(batch["example_id"], -1))
            yield batch
