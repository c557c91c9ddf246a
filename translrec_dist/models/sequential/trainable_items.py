"""Item text vectors from an encoder that trains (``model.sequence.encoder: top_layers | lora | full``).

Recformer's two-stage recipe, made cheap enough to run every step: the catalog's vectors sit in the item
tower's ``text`` buffer and are re-encoded without gradients every ``refresh_every`` optimizer steps (the
task's after-step hook); within a step, the items of the global batch are re-encoded with gradients so the
encoder learns, and the rest of the catalog uses the cached vectors.

When the lower layers are frozen (``top_layers``, and ``lora`` whose adapters sit on the top layers only),
their token states come from ``layer_cache.LowerStates``, computed once per run: a step and a refresh run only
the top ``train_layers`` layers. The items to re-encode are the union of all ranks' batch items (or a sample
of ``encode_items_per_step`` of them), split across the ranks and gathered with gradients, so that N processes
compute the gradients of one process holding the concatenated batch; the refresh is split across ranks too.
The encoder is part of the model, so DDP averages its gradients and ZeRO shards it like any other encoder.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from translrec_dist.data.collate import PadCollator
from translrec_dist.models.encoders import pool
from translrec_dist.models.encoding import (
    as_table,
    encode_tokenized,
    eval_mode,
    length_sorted_order,
    pooled_forward,
    put_in_order,
    rank_share,
)
from translrec_dist.models.sequential.layer_cache import LowerStates, run_layers
from translrec_dist.models.transfer import transformer_layers
from translrec_dist.training.precision import autocast

TOKEN_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TextEncoderItems(nn.Module):
    def __init__(self, encoder: nn.Module, tokens, pad_token_id: int, pooling: str, regime: str, train_layers: int,
                 lower: LowerStates | None = None, items_per_step: int | None = None, frozen_steps: int = 0,
                 dropout: bool = False):
        """``tokens``: the tokenized catalog, unpadded, in catalog order (``data.retrieval.tokenize_catalog``).
        ``lower``: the frozen layers' cached states (then only the top ``train_layers`` layers run)."""
        super().__init__()
        self.encoder, self.pooling, self.pad_token_id = encoder, pooling, pad_token_id
        self.lower, self.items_per_step, self.frozen_steps = lower, items_per_step, frozen_steps
        self.dropout = dropout  # the top layers' own dropout while training (with cached lower states)
        self.top = list(transformer_layers(encoder))[-train_layers:] if lower is not None else None
        self.across_ranks = True  # false: this process alone even under torch.distributed (a reference)
        # optimizer steps done (set by the task's hook, saved in checkpoints): the encoder trains from frozen_steps
        self.register_buffer("optimizer_step", torch.zeros((), dtype=torch.long))
        self.rows = as_table(tokens)  # what the refresh encodes
        self.lengths = np.asarray([len(r) for r in self.rows.column("input_ids").to_pylist()])
        if lower is None:  # the whole encoder runs on each batch: its padded tokens
            padded = PadCollator(pad_token_id).arrow(self.rows)
            self.token_names = [n for n in TOKEN_NAMES if n in padded]
            for name in self.token_names:
                self.register_buffer(f"tok_{name}", padded[name], persistent=False)
        if regime in ("top_layers", "lora"):
            for name, p in encoder.named_parameters():  # lora: the adapters alone train
                p.requires_grad_(regime == "lora" and "lora_" in name)
            if regime == "top_layers":
                for layer in transformer_layers(encoder)[-train_layers:]:
                    for p in layer.parameters():
                        p.requires_grad_(True)

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def encode(self, index: torch.Tensor) -> torch.Tensor:
        """Pooled vectors of the catalog items ``index``, with gradients (the items of a training batch)."""
        if self.lower is not None:
            hidden, mask = self.lower.batch(index.cpu())
            dev = self.optimizer_step.device
            hidden, mask = hidden.to(dev), mask.to(dev)
            # the re-encoded vectors sit beside cached ones (no dropout) in one softmax: dropout only if asked
            with nullcontext() if self.dropout else eval_mode(self.encoder):
                return pool(run_layers(self.top, self.encoder, hidden, mask), mask, self.pooling).float()
        batch = {n: getattr(self, f"tok_{n}")[index] for n in self.token_names}
        width = int(batch["attention_mask"].sum(1).max())  # drop padding columns the batch does not need
        return pooled_forward(self.encoder, self.pooling)({k: v[:, :width] for k, v in batch.items()}).float()

    @torch.no_grad()
    def encode_all(self, batch_size: int = 256, precision: str = "no") -> torch.Tensor:
        """[items x dim] vectors of the whole catalog in eval mode (the refresh). With cached lower states each
        rank encodes its share (every W-th item in length order) through the top layers, then they are gathered."""
        dev = self.optimizer_step.device
        if self.lower is None:  # every rank encodes it all
            with eval_mode(self.encoder):
                positions, vectors = encode_tokenized(pooled_forward(self.encoder, self.pooling), self.rows,
                                                      self.pad_token_id, batch_size=batch_size, device=dev,
                                                      precision=precision)
            return put_in_order(positions, vectors, len(self.rows))
        rank, size = world() if self.across_ranks else (0, 1)
        share = torch.as_tensor(rank_share(length_sorted_order(self.lengths), rank, size))
        vectors = []
        with eval_mode(self.encoder), autocast(precision, dev):
            for start in range(0, len(share), batch_size):
                vectors.append(self.encode(share[start:start + batch_size].clamp(min=0)).float())
        positions, vectors = share.to(dev), torch.cat(vectors)
        if size > 1:
            positions, vectors = all_gather_cat(positions), all_gather_cat(vectors)
        return put_in_order(positions, vectors, len(self.rows))

    def with_fresh(self, cached: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The catalog's text vectors with the batch's ``items`` re-encoded (with gradients)."""
        text = cached.detach().clone()
        if int(self.optimizer_step) < self.frozen_steps:
            # frozen warm-up: no encoder forward; every trainable parameter still gets a (zero) gradient, as
            # DDP expects of every parameter it tracks
            return text + 0.0 * sum(p.sum() for p in self.trainable())
        unique = torch.unique(items[items >= 0])
        if self.lower is None:
            text[unique] = self.encode(unique).to(text.dtype)
            return text
        rank, size = world() if self.across_ranks else (0, 1)
        if size > 1:
            unique = global_union(unique)
        if self.items_per_step and len(unique) > self.items_per_step:
            unique = unique[sampled(unique, self.items_per_step)]
        share = torch.as_tensor(rank_share(unique.cpu().numpy(), rank, size), device=unique.device)
        fresh = self.encode(torch.where(share >= 0, share, unique[0]))
        if size > 1:
            from torch.distributed.nn.functional import all_gather  # gradients flow back to the rank that encoded

            fresh, share = torch.cat(all_gather(fresh.contiguous())), all_gather_cat(share)
        keep = share >= 0
        text[share[keep]] = fresh[keep].to(text.dtype)
        return text


def sampled(unique: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` positions of ``unique``, the same on every rank and in a resumed run (seeded by the items)."""
    digest = hashlib.blake2b(unique.cpu().numpy().astype(np.int64).tobytes(), digest_size=8).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2 ** 63 - 1))
    return torch.randperm(len(unique), generator=gen)[:k].sort().values.to(unique.device)


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Equal-shaped tensors of every rank, concatenated in rank order (no gradient)."""
    out = [torch.empty_like(t) for _ in range(world()[1])]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def global_union(local: torch.Tensor) -> torch.Tensor:
    """The sorted union of every rank's item indices."""
    n = torch.tensor([len(local)], device=local.device)
    longest = int(all_gather_cat(n).max())
    padded = torch.cat([local, local.new_full((longest - len(local),), -1)])
    every = all_gather_cat(padded)
    return torch.unique(every[every >= 0])
