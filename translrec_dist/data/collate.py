"""Dynamic padding: each batch is padded to its own longest row, never to ``max_length``."""

from __future__ import annotations

import torch


class PadCollator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        if self.multiple:
            longest = -(-longest // self.multiple) * self.multiple
        out = {}
        for key, pad in (("input_ids", self.pad_token_id), ("token_type_ids", 0)):
            if key not in rows[0]:
                continue
            t = torch.full((len(rows), longest), pad, dtype=torch.long)
            for i, r in enumerate(rows):
                t[i, : len(r[key])] = torch.as_tensor(r[key], dtype=torch.long)
            out[key] = t
        # Rows are stored unpadded, so the mask is just each row's length (no need to store a column of ones).
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        out["attention_mask"] = (torch.arange(longest)[None, :] < lengths[:, None]).long()
        out["labels"] = torch.tensor([float(r["label"]) for r in rows], dtype=torch.float32)
        out["example_id"] = torch.tensor([int(r["example_id"]) for r in rows], dtype=torch.long)
        return out
