"""Item text vectors from an encoder that trains (``model.sequence.encoder: top_layers | full``).

Recformer's two-stage recipe, made cheap enough to run every step: the catalog's vectors sit in the item
tower's ``text`` buffer and are re-encoded without gradients every ``refresh_every`` optimizer steps (the
task's after-step hook, through ``models.encoding``: length-sorted, under ``inference_mode``); within a step,
the items of the batch are re-encoded with gradients so the encoder learns, and the rest of the catalog uses
the cached vectors. The encoder is part of the model, so DDP averages its gradients and ZeRO shards it like
any other task's encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from translrec_dist.data.collate import PadCollator
from translrec_dist.models.encoding import as_table, encode_tokenized, eval_mode, pooled_forward, put_in_order
from translrec_dist.models.transfer import transformer_layers

TOKEN_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class TextEncoderItems(nn.Module):
    def __init__(self, encoder: nn.Module, tokens, pad_token_id: int, pooling: str, regime: str, train_layers: int):
        """``tokens``: the tokenized catalog, unpadded, in catalog order (``data.retrieval.tokenize_catalog``)."""
        super().__init__()
        self.encoder, self.pooling, self.pad_token_id = encoder, pooling, pad_token_id
        self.rows = as_table(tokens)  # what the refresh encodes
        padded = PadCollator(pad_token_id).arrow(self.rows)  # the same rows padded to one length: batch items
        self.token_names = [n for n in TOKEN_NAMES if n in padded]
        for name in self.token_names:
            self.register_buffer(f"tok_{name}", padded[name], persistent=False)
        if regime == "top_layers":
            for p in encoder.parameters():
                p.requires_grad_(False)
            for layer in transformer_layers(encoder)[-train_layers:]:
                for p in layer.parameters():
                    p.requires_grad_(True)

    def encode(self, index: torch.Tensor) -> torch.Tensor:
        """Pooled vectors of the catalog items ``index``, with gradients (the items of a training batch)."""
        batch = {n: getattr(self, f"tok_{n}")[index] for n in self.token_names}
        width = int(batch["attention_mask"].sum(1).max())  # drop padding columns the batch does not need
        return pooled_forward(self.encoder, self.pooling)({k: v[:, :width] for k, v in batch.items()}).float()

    @torch.no_grad()
    def encode_all(self, batch_size: int = 256, precision: str = "no") -> torch.Tensor:
        """[items x dim] vectors of the whole catalog in eval mode (the refresh; every rank encodes it all)."""
        with eval_mode(self.encoder):
            positions, vectors = encode_tokenized(pooled_forward(self.encoder, self.pooling), self.rows,
                                                  self.pad_token_id, batch_size=batch_size,
                                                  device=self.tok_input_ids.device, precision=precision)
        return put_in_order(positions, vectors, len(self.rows))

    def with_fresh(self, cached: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The catalog's text vectors with ``items`` re-encoded (with gradients)."""
        unique = torch.unique(items[items >= 0])
        text = cached.detach().clone()
        text[unique] = self.encode(unique).to(text.dtype)
        return text

