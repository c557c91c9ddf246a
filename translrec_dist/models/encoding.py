"""Encode many texts (an item catalog, user histories) into vectors, fast: the one encoder of every call site
(full-catalog evaluation, the retrieval and sequential item towers, serving's index and new items).

- Rows are sorted by length within windows of ``SORT_WINDOW`` rows, so a batch pads to almost its own
  length (file order pads every batch to its longest row), and the vectors are put back in row order.
- Ranks take every W-th row of the sorted order: equal counts (ZeRO-3 forwards are collectives, so every rank
  runs the same number of batches; padding rows carry position -1) and similar lengths on every rank.
- bf16 autocast when the run computes in bf16 (``translrec_dist.training.precision``), the encoder under
  ``torch.inference_mode`` (no autograd bookkeeping at all) except under DeepSpeed, whose ZeRO-3 hooks
  re-materialise parameters during the forward: tensors made in inference mode could not be updated by
  the training steps that follow.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from translrec_dist.data.collate import PadCollator
from translrec_dist.models.encoders import pool
from translrec_dist.training.precision import autocast

SORT_WINDOW = 65_536  # rows sorted together: large enough to pad little, small enough to keep memory flat


def pooled_forward(encoder: nn.Module, pooling: str) -> Callable[[dict], torch.Tensor]:
    """``forward`` of a plain Hugging Face encoder for ``encode_*``: its last hidden state, pooled."""
    def forward(batch: dict) -> torch.Tensor:
        return pool(encoder(**batch).last_hidden_state, batch["attention_mask"], pooling)
    return forward


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode (no dropout) for the block, then back to the mode it was in."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def as_table(rows) -> pa.Table:
    """A pretokenized ``datasets.Dataset``, a tokenizer's output (dict of lists) or an Arrow table -> Arrow."""
    if isinstance(rows, pa.Table):
        table = rows
    elif hasattr(rows, "with_format"):
        table = rows.with_format("arrow")[:]
    else:
        table = pa.table({k: pa.array(list(v), type=pa.list_(pa.int32())) for k, v in rows.items()
                          if k in ("input_ids", "token_type_ids")})
    n = len(table)
    for name, values in (("example_id", np.arange(n)), ("label", np.zeros(n, dtype=np.float32))):
        if name not in table.column_names:
            table = table.append_column(name, pa.array(values))
    return table


def length_sorted_order(lengths: np.ndarray, window: int = SORT_WINDOW) -> np.ndarray:
    """Row positions, each window of ``window`` consecutive rows sorted by length (stable)."""
    return np.concatenate([start + np.argsort(lengths[start:start + window], kind="stable")
                           for start in range(0, len(lengths), window)]) if len(lengths) else np.arange(0)


def rank_share(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's rows of ``order``: every W-th, padded with -1 to the same count on every rank."""
    per_rank = -(-len(order) // world)
    share = order[rank::world]
    return np.concatenate([share, np.full(per_rank - len(share), -1, dtype=share.dtype)])


def encoding_batches(rows, pad_token_id: int, batch_size: int, rank: int = 0, world: int = 1,
                     window: int = SORT_WINDOW):
    """(positions, padded batch) pairs of this rank's share, in length-sorted order."""
    table = as_table(rows)
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False)
    share = rank_share(length_sorted_order(lengths, window), rank, world)
    collate = PadCollator(pad_token_id)
    # Padding rows repeat the share's last real row (the longest, close to the last batch's lengths) so the
    # batch has a normal shape; they are dropped after the forward.
    real = share[share >= 0]
    rows_taken = np.where(share >= 0, share, real[-1] if len(real) else 0)
    step = max(window // batch_size, 1) * batch_size
    for chunk_start in range(0, len(share), step):
        # One Arrow take per chunk of whole batches, then zero-copy slices: a take per batch made the data path
        # 1.8x slower (bench/encode.py's tiny catalog: 85 -> 46 ms for 132 batches, the same batches).
        chunk = table.take(pa.array(rows_taken[chunk_start:chunk_start + step]))
        for start in range(0, len(chunk), batch_size):
            batch = collate.arrow(chunk.slice(start, batch_size))
            positions = share[chunk_start + start:chunk_start + start + batch_size]
            yield positions, {k: v for k, v in batch.items() if k not in ("labels", "example_id")}


def prefetched(items: Iterable, depth: int = 2) -> Iterator:
    """``items`` in order, each produced ahead in a background thread: the next batch is padded while the encoder
    runs on this one (bench/encode.py: in the loop, padding cost ~11% of the tiny BERT's forward time). Arrow and
    numpy release the GIL. An error in the thread is raised here; closing the generator stops the thread."""
    buffer: queue.Queue = queue.Queue(depth)
    stop, done = threading.Event(), object()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(done)
        except BaseException as error:  # handed to the consumer, which raises it
            offer(error)

    thread = threading.Thread(target=produce, name="encoding-batches", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def encode_tokenized(forward: Callable[[dict], torch.Tensor], rows, pad_token_id: int, *, batch_size: int,
                     device: torch.device | str = "cpu", precision: str = "no", rank: int = 0, world: int = 1,
                     extra: dict[str, np.ndarray] | None = None, inference_mode: bool = True,
                     window: int = SORT_WINDOW) -> tuple[torch.Tensor, torch.Tensor]:
    """(row positions, fp32 vectors) of this rank's share of the tokenized ``rows``; -1 marks padding rows.

    ``forward(batch) -> [B x dim]`` runs the encoder; ``extra`` holds per-row arrays added to each batch
    (e.g. ``item_index`` for id embeddings). With one process, ``put_in_order`` gives the [rows x dim] matrix.
    """
    grad_free = torch.inference_mode if inference_mode else torch.no_grad
    positions, vectors = [], []
    with grad_free(), autocast(precision, device):
        for pos, batch in prefetched(with_extra(encoding_batches(rows, pad_token_id, batch_size, rank, world, window),
                                                extra)):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            vectors.append(forward(batch).float())
            positions.append(torch.as_tensor(pos, device=device))
    if not vectors:
        return torch.empty(0, dtype=torch.long), torch.empty(0)
    return torch.cat(positions), torch.cat(vectors)


def with_extra(batches: Iterable, extra: dict[str, np.ndarray] | None) -> Iterator:
    """``batches`` with each per-row array of ``extra`` added for the batch's rows."""
    for pos, batch in batches:
        for key, values in (extra or {}).items():
            batch[key] = torch.as_tensor(values[np.maximum(pos, 0)])
        yield pos, batch


def put_in_order(positions: torch.Tensor, vectors: torch.Tensor, num_rows: int) -> torch.Tensor:
    """[num_rows x dim] from (possibly gathered) positions and vectors; padding rows (-1) are dropped."""
    keep = positions >= 0
    out = torch.empty(num_rows, vectors.shape[1], device=vectors.device, dtype=vectors.dtype)
    out[positions[keep]] = vectors[keep]
    return out


def gather_in_order(positions: torch.Tensor, vectors: torch.Tensor, num_rows: int) -> torch.Tensor:
    """[num_rows x dim] on every rank from each rank's ``encode_tokenized`` share (a collective: every rank of the
    default process group calls it; ``rank_share`` gave the shares equal counts, as ``all_gather`` needs)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return put_in_order(positions, vectors, num_rows)
    world = dist.get_world_size()
    all_positions = [torch.empty_like(positions) for _ in range(world)]
    all_vectors = [torch.empty_like(vectors) for _ in range(world)]
    dist.all_gather(all_positions, positions)
    dist.all_gather(all_vectors, vectors.contiguous())
    return put_in_order(torch.cat(all_positions), torch.cat(all_vectors), num_rows)


def encode_texts(forward: Callable[[dict], torch.Tensor], texts: list[str], tokenizer, max_length: int, *,
                 batch_size: int = 128, device: torch.device | str = "cpu", precision: str = "no",
                 extra: dict[str, np.ndarray] | None = None, rank: int = 0, world: int = 1) -> torch.Tensor:
    """[len(texts) x dim] vectors of raw texts: one batched tokenizer call, then ``encode_tokenized``.

    ``world`` > 1: a collective of the default process group; each rank encodes its share of the rows and every
    rank gets the whole matrix (a catalog of millions of items is split instead of encoded once per rank).
    """
    if not texts:
        return torch.empty(0)
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    positions, vectors = encode_tokenized(forward, dict(enc), tokenizer.pad_token_id, batch_size=batch_size,
                                          device=device, precision=precision, extra=extra, rank=rank, world=world)
    if world > 1:
        return gather_in_order(positions, vectors, len(texts)).cpu()
    return put_in_order(positions, vectors, len(texts)).cpu()
