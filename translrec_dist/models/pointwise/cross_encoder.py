"""Cross-encoder recommender: any Hugging Face encoder (``models.encoders``) + pooling + a one-unit head.

The export (``tasks.pointwise``, ``models.export``) is the encoder in plain Hugging Face format plus
``head.safetensors``; the score is ``head(pool(encoder(x)))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file
from torch import nn

from translrec_dist.models.encoders import build_encoder, pool
from translrec_dist.models.transfer import apply_transfer_knobs

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

HEAD_FILE = "head.safetensors"


class CrossEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, pooling: str = "cls", head_dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(encoder.config.hidden_size, 1)
        # accelerate fills DeepSpeed's hidden-size based "auto" buckets from model.config
        self.config = encoder.config

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_unused) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        pooled = pool(hidden, attention_mask, self.pooling).float()
        # The head runs in fp32 under bf16 autocast: a bf16 logit keeps ~3 significant digits, which the loss
        # and the ranking metrics (AUC ties) would see; one [B x H] x [H x 1] product costs nothing.
        with torch.autocast(pooled.device.type, enabled=False):
            return self.head(self.dropout(pooled)).squeeze(-1)


def build_model(cfg: RunConfig, tokenizer, label_mean: float | None = None) -> CrossEncoder:
    encoder = apply_transfer_knobs(build_encoder(cfg, vocab_size=len(tokenizer)), cfg)
    model = CrossEncoder(encoder, cfg.model.pooling, cfg.model.head_dropout)
    if cfg.model.init_from and (Path(cfg.model.init_from) / HEAD_FILE).is_file():
        model.head.load_state_dict(load_file(str(Path(cfg.model.init_from) / HEAD_FILE)))
    elif label_mean is not None:
        # Rating regression starts at the mean rating, so early steps learn structure, not the offset.
        with torch.no_grad():
            model.head.bias.fill_(label_mean)
    return model
