"""Item text vectors from an encoder that trains (``model.sequence.encoder: top_layers | full``).

Recformer's two-stage recipe, made cheap enough to run every step: the catalog's vectors sit in the item
tower's ``text`` buffer and are re-encoded without gradients every ``refresh_every`` optimizer steps (the
task's after-step hook); within a step, the items of the batch are re-encoded with gradients so the
encoder learns, and the rest of the catalog uses the cached vectors. The encoder is part of the model,
so DDP averages its gradients and ZeRO shards it like any other task's encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from translrec_dist.models.cross_encoder import pool
from translrec_dist.models.transfer import transformer_layers


class TextEncoderItems(nn.Module):
    def __init__(self, encoder: nn.Module, tokens: dict[str, torch.Tensor], pooling: str, regime: str,
                 train_layers: int):
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        for name, t in tokens.items():  # the tokenized catalog, padded to one length
            self.register_buffer(f"tok_{name}", t, persistent=False)
        self.token_names = list(tokens)
        if regime == "top_layers":
            for p in encoder.parameters():
                p.requires_grad_(False)
            for layer in transformer_layers(encoder)[-train_layers:]:
                for p in layer.parameters():
                    p.requires_grad_(True)

    def encode(self, index: torch.Tensor) -> torch.Tensor:
        batch = {n: getattr(self, f"tok_{n}")[index] for n in self.token_names}
        width = int(batch["attention_mask"].sum(1).max())  # drop padding columns the batch does not need
        batch = {k: v[:, :width] for k, v in batch.items()}
        hidden = self.encoder(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], self.pooling).float()

    @torch.no_grad()
    def encode_all(self, batch_size: int = 256) -> torch.Tensor:
        was = self.encoder.training
        self.encoder.eval()
        n = self.tok_input_ids.shape[0]
        out = torch.cat([self.encode(torch.arange(i, min(i + batch_size, n), device=self.tok_input_ids.device))
                         for i in range(0, n, batch_size)])
        self.encoder.train(was)
        return out

    def with_fresh(self, cached: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The catalog's text vectors with ``items`` re-encoded (with gradients)."""
        unique = torch.unique(items[items >= 0])
        text = cached.detach().clone()
        text[unique] = self.encode(unique).to(text.dtype)
        return text


def tokenize_catalog_tensors(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
