"""Bi-encoder for next-item retrieval: a user tower over the history text, an item tower over item text.

Both towers are Hugging Face encoders (shared weights by default). The score is the cosine similarity
(or dot product) of the pooled vectors; training is softmax cross-entropy over in-batch negatives, with
in-batch copies of the positive item masked out (they are not negatives).

The export (``tasks.retrieval``, ``models.export``): the (user) encoder in plain Hugging Face format,
``item_encoder/`` when the towers are separate, and ``bi_encoder.safetensors`` for the optional item-id
embeddings. ``AutoModel.from_pretrained(final)`` loads the encoder alone.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from translrec_dist.models.encoders import build_encoder, load_pretrained_encoder, pool
from translrec_dist.models.in_batch_softmax import in_batch_softmax
from translrec_dist.models.transfer import apply_transfer_knobs

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

EXTRA_FILE = "bi_encoder.safetensors"
ITEM_ENCODER_DIR = "item_encoder"


class BiEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, item_encoder: nn.Module | None = None, *, pooling: str = "cls",
                 similarity: str = "cosine", temperature: float = 0.05, gather_negatives: bool = False,
                 num_items: int = 0):
        super().__init__()
        self.encoder = encoder
        self.item_encoder = item_encoder  # None: the towers share ``encoder``
        self.pooling, self.similarity, self.temperature = pooling, similarity, temperature
        self.gather_negatives = gather_negatives
        # Row 0 is "no id" (items added after training): the text alone represents them.
        self.item_ids = nn.Embedding(num_items + 1, encoder.config.hidden_size, padding_idx=0) if num_items else None
        if self.item_ids is not None:
            nn.init.zeros_(self.item_ids.weight)

    def _embed(self, encoder, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return pool(hidden, attention_mask, self.pooling).float()

    def _finish(self, vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(vectors, dim=-1) if self.similarity == "cosine" else vectors

    def encode_users(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self._finish(self._embed(self.encoder, input_ids, attention_mask, token_type_ids))

    def encode_items(self, input_ids, attention_mask, token_type_ids=None, item_index=None) -> torch.Tensor:
        vectors = self._embed(self.item_encoder or self.encoder, input_ids, attention_mask, token_type_ids)
        if self.item_ids is not None and item_index is not None:
            known = (item_index >= 0) & (item_index < self.item_ids.num_embeddings - 1)
            ids = self.item_ids(torch.where(known, item_index + 1, torch.zeros_like(item_index)))
            vectors = vectors + ids * known.unsqueeze(-1).to(ids.dtype)
        return self._finish(vectors)

    def forward(self, input_ids, attention_mask, token_type_ids=None, item_input_ids=None,
                item_attention_mask=None, item_token_type_ids=None, item_index=None, encode: str | None = None,
                **_unused) -> torch.Tensor:
        """Training: the in-batch loss. ``encode="users"|"items"``: embeddings (evaluation goes through
        the wrapped model's forward, so DDP and DeepSpeed hooks see every call)."""
        if encode == "users":
            return self.encode_users(input_ids, attention_mask, token_type_ids)
        if encode == "items":
            return self.encode_items(input_ids, attention_mask, token_type_ids, item_index)
        users = self.encode_users(input_ids, attention_mask, token_type_ids)
        items = self.encode_items(item_input_ids, item_attention_mask, item_token_type_ids, item_index)
        return in_batch_loss(users, items, item_index, self.scale(), self.gather_negatives)

    def scale(self) -> float:
        return 1.0 / self.temperature if self.similarity == "cosine" else 1.0


def in_batch_loss(users: torch.Tensor, items: torch.Tensor, item_index: torch.Tensor, scale: float,
                  gather: bool) -> torch.Tensor:
    """Mean softmax cross-entropy of each user against every item in the (global) batch (``in_batch_softmax``)."""
    return in_batch_softmax(users, item_index, item_index, items, lambda q, c: q @ c.T * scale, gather).mean()


def build_bi_encoder(cfg: RunConfig, tokenizer, num_items: int = 0) -> BiEncoder:
    m = cfg.model
    encoder = build_encoder(cfg, vocab_size=len(tokenizer))
    item_encoder = None if m.share_towers else copy.deepcopy(encoder)
    if m.init_from and not m.share_towers and (Path(m.init_from) / ITEM_ENCODER_DIR).is_dir():
        item_encoder = load_pretrained_encoder(str(Path(m.init_from) / ITEM_ENCODER_DIR), m.attn_implementation,
                                               m.trust_remote_code)
    encoder = apply_transfer_knobs(encoder, cfg)
    item_encoder = apply_transfer_knobs(item_encoder, cfg) if item_encoder is not None else None
    return BiEncoder(encoder, item_encoder, pooling=m.pooling, similarity=m.similarity, temperature=m.temperature,
                     gather_negatives=cfg.train.gather_negatives,
                     num_items=num_items if m.item_id_embeddings else 0)
