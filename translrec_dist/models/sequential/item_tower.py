"""Item tower of the sequential task: pretrained-encoder text vectors -> adaptor (+ optional item-id vector).

The encoder's pooled text vectors are a buffer (``text``), computed once per encoder state: in the frozen
regime once per run (cached in the run directory, so training runs at the speed of an ID model), in the
top-layers / full regimes re-encoded every ``refresh_every`` steps (Recformer's two-stage recipe) by the
task's refresh hook. The adaptor (UniSRec: parametric whitening, or a mixture of whitening experts) maps
them to the sequence model's width. ID vectors (``item_repr: text+id`` or ``id``) exist for the training
catalog only; items added later (``index --items``) are represented by their text alone.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save
from torch import nn

from translrec_dist import safe_io
from translrec_dist.models.sequential.causal_blocks import FastDropout

if TYPE_CHECKING:
    from translrec_dist.config.schema import SequenceConfig


log = logging.getLogger(__name__)


class Whitening(nn.Module):
    """UniSRec's parametric whitening: (x - b) W, both learned."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d_in))
        self.proj = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x):
        return self.proj(x - self.bias)


class MoEAdaptor(nn.Module):
    """UniSRec's mixture of whitening experts, gated per item by its text vector."""

    def __init__(self, d_in: int, d_out: int, experts: int):
        super().__init__()
        self.experts = nn.ModuleList(Whitening(d_in, d_out) for _ in range(experts))
        self.gate = nn.Linear(d_in, experts, bias=False)

    def forward(self, x):
        weights = torch.softmax(self.gate(x), dim=-1).unsqueeze(-1)
        return (torch.stack([e(x) for e in self.experts], dim=-2) * weights).sum(-2)


def build_adaptor(kind: str, d_in: int, d_out: int, experts: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(d_in, d_out)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(d_in, 2 * d_out), nn.GELU(), nn.Linear(2 * d_out, d_out))
    if kind == "whitening":
        return Whitening(d_in, d_out)
    return MoEAdaptor(d_in, d_out, experts)


class ItemTower(nn.Module):
    def __init__(self, cfg: SequenceConfig, num_items: int, text_dim: int = 0):
        super().__init__()
        self.use_text = cfg.item_repr != "id"
        self.use_ids = cfg.item_repr != "text"
        self.hidden = cfg.hidden
        if self.use_text:
            self.register_buffer("text", torch.zeros(num_items, text_dim))  # saved: new items sit beside them
            self.adaptor = build_adaptor(cfg.adaptor, text_dim, cfg.hidden, cfg.adaptor_experts)
            self.text_dropout = FastDropout(cfg.adaptor_dropout)  # torch's Bernoulli draw: ~3% of a CPU step
        # Row 0 is "no id": items outside the training catalog. unknown_id=zero keeps it at zero (text alone);
        # learned trains it on the items whose ID id_dropout drops, so it stands for an average unseen item.
        pad = 0 if cfg.unknown_id == "zero" else None
        self.ids = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=pad) if self.use_ids else None
        # distill > 0: a text-only head taught to reproduce the trained items' text+ID vectors; it scores the
        # items without an ID vector, so that they land on the same scale as the warm ones
        self.cold = build_adaptor(cfg.adaptor, text_dim, cfg.hidden, cfg.adaptor_experts) \
            if cfg.distill > 0 and self.use_text and self.use_ids else None
        self.cold_scale = cfg.cold_scale

    @property
    def num_items(self) -> int:
        return self.text.shape[0] if self.use_text else self.ids.num_embeddings - 1

    def set_text_vectors(self, vectors: torch.Tensor) -> None:
        self.text = vectors.to(self.text.device, self.text.dtype)

    def forward(self, text: torch.Tensor | None = None, index: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of the whole catalog (no arguments), or of given text vectors / catalog positions.
        ``index`` < 0 or beyond the training catalog: no id vector (new items)."""
        if text is None and index is None:
            index = torch.arange(self.num_items, device=self.ids.weight.device if self.ids is not None
                                 else self.text.device)
            text = self.text if self.use_text else None
        out = 0
        if self.use_text:
            text = text if text is not None else self.text[index]
            out = self.adaptor(self.text_dropout(text))
        if self.ids is not None and index is not None:
            known = (index >= 0) & (index < self.ids.num_embeddings - 1)
            out = out + self.ids(torch.where(known, index + 1, torch.zeros_like(index)))
            if self.cold is not None:
                out = torch.where(known.unsqueeze(-1), out, self.cold(text) * self.cold_scale)
        return out

    def distill_loss(self, text: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """Mean squared distance of the text-only head's vectors to the (fixed) text+ID vectors of the trained
        items: the whole catalog each step (cheap next to the sequence model), so every rank computes the same."""
        index = torch.nonzero(trained).squeeze(1)
        with torch.no_grad():
            target = self.adaptor(text[index]) + self.ids(index + 1)
        return (self.cold(text[index]) - target).pow(2).sum(-1).mean()


# --------------------------------------------------------------------------- cached item text vectors


def cached_text_vectors(cache_dir: Path, key_parts: list[str], texts: list[str], compute) -> torch.Tensor:
    """Text vectors cached under ``cache_dir`` by a hash of the encoder identity and the texts: the frozen
    regime encodes the catalog once per encoder state, not once per run or epoch."""
    digest = hashlib.sha256("\x1f".join([*key_parts, *texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"text_vectors-{digest}.safetensors"
    if path.is_file():
        log.info("item text vectors from %s", path)
        return load_file(str(path))["vectors"]
    vectors = compute(texts)
    safe_io.write_bytes(path, save({"vectors": vectors.contiguous()}), cache_dir)
    log.info("encoded %d item texts -> %s", len(texts), path)
    return vectors
