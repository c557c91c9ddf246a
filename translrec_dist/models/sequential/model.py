"""Sequential recommender (SASRec over item vectors): a causal transformer reads the user's items and its
state at every position scores the next item against the catalog.

Item vectors come from ``item_tower.ItemTower`` (text, ids, or both) and are shared by the input and the
output side. Training uses every position of a window in one pass; the loss is softmax cross-entropy over
the whole catalog (``loss: full``), or over in-batch targets plus popularity-sampled negatives with logQ
correction (``loss: sampled``), gathered across ranks with ``train.gather_negatives``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from translrec_dist.models.in_batch_softmax import in_batch_softmax, world
from translrec_dist.models.sequential.catalog_softmax import catalog_cross_entropy
from translrec_dist.models.sequential.causal_blocks import CausalTransformer, FastDropout
from translrec_dist.models.sequential.item_tower import ItemTower

if TYPE_CHECKING:
    from translrec_dist.config.schema import SequenceConfig


class SequenceModel(nn.Module):
    def __init__(self, cfg: SequenceConfig, num_items: int, max_history: int, text_dim: int = 0,
                 gather_negatives: bool = False):
        super().__init__()
        self.cfg, self.max_history, self.gather_negatives = cfg, max_history, gather_negatives
        self.global_batch_mean = True  # false: this rank's mean even under torch.distributed (a reference)
        self.items = ItemTower(cfg, num_items, text_dim)
        self.positions = nn.Embedding(max_history, cfg.hidden)
        self.norm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.dropout = FastDropout(cfg.dropout)
        self.transformer = CausalTransformer(cfg.hidden, cfg.heads, cfg.inner, cfg.layers, cfg.dropout,
                                             cfg.attn_dropout)
        # Saved with the weights (checkpoints, exports): the training counts the loss and the export need.
        self.register_buffer("log_q", torch.zeros(num_items))
        self.register_buffer("trained", torch.ones(num_items, dtype=torch.bool))
        self.apply(self._init)
        self.text_items = None  # TextEncoderItems when the encoder trains (attach_text_encoder)
        # the optimizer's learning rate and frozen warm-up steps for these parameters (training.optim)
        self.encoder_prefix, self.encoder_lr, self.encoder_frozen_steps = "text_items.encoder.", None, 0
        if self.items.ids is not None:
            with torch.no_grad():
                self.items.ids.weight[0].zero_()

    @staticmethod
    def _init(module):
        # SASRec / RecBole initialisation: N(0, 0.02) weights, zero biases.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def set_popularity(self, counts: torch.Tensor) -> None:
        """Sampling distribution of in-batch targets and sampled negatives (training frequency)."""
        p = counts.double().clamp(min=0) / max(float(counts.sum()), 1.0)
        self.log_q = torch.log(p.clamp(min=1e-12)).float().to(self.log_q.device)
        self.trained = (counts > 0).to(self.log_q.device)

    # ----------------------------------------------------------------- towers

    def attach_text_encoder(self, text_items) -> None:
        """Regimes top_layers / full: the encoder trains; set after the init above (keeps its weights)."""
        self.text_items = text_items

    @torch.no_grad()
    def refresh_catalog(self, precision: str = "no") -> None:
        """Re-encode every item's text with the current encoder (the every-N-steps hook), in the run's precision."""
        if self.text_items is not None:
            self.items.set_text_vectors(self.text_items.encode_all(precision=precision))

    def catalog(self, batch_items: torch.Tensor | None = None) -> torch.Tensor:
        return self.catalog_and_text(batch_items)[0]

    def catalog_and_text(self, batch_items: torch.Tensor | None = None):
        """(every item's vector, the text vectors used or None). An item without training interactions (held
        out, or new) has an ID vector that never trained: it is represented by its text alone (through the
        distilled cold head when ``distill`` > 0). ``id_dropout`` drops the ID vectors of a random share of
        items in training, so the text part alone also ranks well (cold start)."""
        text = None
        if self.text_items is not None and self.training and batch_items is not None:
            text = self.text_items.with_fresh(self.items.text, batch_items)
        if self.items.ids is None:
            return (self.items(text=text, index=torch.arange(len(text), device=text.device)) if text is not None
                    else self.items()), text
        index = torch.arange(self.items.num_items, device=self.trained.device)
        keep = self.trained
        if self.training and self.cfg.id_dropout > 0 and self.items.use_text:
            keep = keep & (torch.rand(len(index), device=index.device) >= self.cfg.id_dropout)
        index = torch.where(keep, index, torch.full_like(index, -1))
        text = self.items.text if text is None and self.items.use_text else text
        return self.items(text=text, index=index), text

    def states(self, seq: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """[B x L x H] state at every position of right-aligned sequences (PAD = -1 on the left)."""
        valid = seq >= 0
        x = item_vectors[seq.clamp(min=0)] * valid.unsqueeze(-1)
        length = seq.shape[1]
        x = x + self.positions.weight[self.max_history - length:]
        return self.transformer(self.dropout(self.norm(x)), valid)

    def score(self, states: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        if self.cfg.normalize:
            return F.normalize(states, dim=-1) @ F.normalize(item_vectors, dim=-1).T / self.cfg.temperature
        return states @ item_vectors.T

    def user_vectors(self, history: torch.Tensor, item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """[B x H] the state after each (right-aligned) history: what scores the next item."""
        vectors = self.catalog() if item_vectors is None else item_vectors
        return self.states(history[:, -self.max_history:], vectors)[:, -1]

    def infer(self, mode: str, history: torch.Tensor | None = None, item_vectors: torch.Tensor | None = None,
              precision: str = "no") -> torch.Tensor:
        """Evaluation and the catalog refresh as modes of ``forward``, called on the wrapped model (DDP, the
        DeepSpeed engine): ZeRO-3 gathers a partitioned parameter that a module reads from another one (e.g.
        ``positions.weight`` here) only while the engine's forward runs, so a method called beside it reads an
        empty partition. Each call is then a collective (ZeRO-3 gathers, DDP broadcasts buffers): every rank
        must make the same calls.

        ``catalog``: [N x H] every item's vector. ``users``: [B x H] the state after each history (``item_vectors``:
        the catalog's, else computed). ``refresh``: re-encode the catalog's texts (trained encoder regimes) in
        ``precision`` (the run's: "no" or "bf16")."""
        if mode == "catalog":
            return self.catalog()
        if mode == "users":
            return self.user_vectors(history, item_vectors)
        if mode == "refresh":
            self.refresh_catalog(precision)
            return self.items.text
        raise ValueError(f"unknown SequenceModel mode {mode!r}: loss, catalog, users or refresh")

    # ----------------------------------------------------------------- training

    def forward(self, windows: torch.Tensor | None = None, negatives: torch.Tensor | None = None, mode: str = "loss",
                history: torch.Tensor | None = None, item_vectors: torch.Tensor | None = None,
                precision: str = "no", **_batch) -> torch.Tensor:
        """Mean next-item loss over every real position of ``windows`` [B x (L+1)]. ``loss: sampled`` draws
        ``num_negatives`` by training popularity when ``negatives`` is not given. Other modes: ``infer``."""
        if mode != "loss":
            return self.infer(mode, history, item_vectors, precision)
        inputs, targets = windows[:, :-1], windows[:, 1:]
        keep = (inputs >= 0) & (targets >= 0)
        vectors, text = self.catalog_and_text(windows)
        states = self.states(inputs, vectors)[keep]
        targets = targets[keep]
        if self.cfg.loss == "full":
            losses = self.full_losses(states, targets, vectors)
        else:
            if negatives is None and self.cfg.num_negatives:
                negatives = self.sample_negatives(self.cfg.num_negatives).to(targets.device)
            losses = self.sampled_losses(states, targets, vectors, negatives)
        loss = global_mean(losses) if self.global_batch_mean else losses.mean()
        if self.items.cold is not None:  # the same on every rank: DDP's average keeps it as it is
            loss = loss + self.cfg.distill * self.items.distill_loss(text, self.trained)
        return loss

    def full_losses(self, states, targets, vectors) -> torch.Tensor:
        """Softmax cross-entropy over the items training knows: an item with no training interaction (held
        out for cold start, or new) would otherwise be pushed down at every step and never be ranked. The
        logits are computed for those items only (the same loss as masking the others out of a full-catalog
        softmax, without scoring them or filling a [targets x catalog] mask each step), in row chunks
        (``catalog_softmax``)."""
        index, rank = self.trained_index()
        if index is not None:
            vectors, targets = vectors[index], rank[targets]
        if self.cfg.normalize:  # the cosine / temperature scores of ``score`` as a plain product
            states, vectors = F.normalize(states, dim=-1) / self.cfg.temperature, F.normalize(vectors, dim=-1)
        return catalog_cross_entropy(states, vectors, targets)

    def trained_index(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(catalog positions of the trained items, each item's position among them), or (None, None) when
        every item trained. Cached until ``trained`` changes (``set_popularity``, a loaded state dict)."""
        key = getattr(self, "_trained_key", None)  # the tensor itself (kept alive) and its in-place version
        if key is None or key[0] is not self.trained or key[1] != self.trained._version:
            index = torch.nonzero(self.trained).squeeze(1)
            # an untrained item is never a training target (``trained`` counts the training targets); if one
            # were, its out-of-range position fails loudly instead of training another item
            rank = torch.full_like(self.trained, len(index), dtype=torch.long)
            rank[index] = torch.arange(len(index), device=index.device)
            self._trained_key = (self.trained, self.trained._version)
            self._trained_cache = (None, None) if len(index) == len(self.trained) else (index, rank)
        return self._trained_cache

    def sampled_losses(self, states, targets, vectors, negatives) -> torch.Tensor:
        """Softmax over the (global) batch's targets plus ``negatives``, each logit minus log q(item)
        (the sampling probability of in-batch and popularity-sampled items; Yi et al. 2019)."""
        cand = targets if negatives is None else torch.cat([targets, negatives])
        return in_batch_softmax(states, targets, cand, vectors[cand], self.score, self.gather_negatives,
                                self.log_q if self.cfg.logq else None)

    def sample_negatives(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.log_q.exp(), n, replacement=True, generator=generator)


def global_mean(losses: torch.Tensor) -> torch.Tensor:
    """Sum over this rank's targets / targets of all ranks, times the world size: after DDP averages the
    gradients, the result is the mean over the global batch even when ranks hold different numbers of
    targets (windows have different lengths)."""
    rank, size = world()
    count = torch.tensor(float(len(losses)), device=losses.device)
    if size > 1:
        dist.all_reduce(count)
    return losses.sum() * size / count.clamp(min=1.0)
