"""Dynamic padding: each batch is padded to its own longest row, never to ``max_length``."""

from __future__ import annotations

import numpy as np
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

    def arrow(self, table) -> dict[str, torch.Tensor]:
        """The same batch from an Arrow table of rows (the streaming path), padded with numpy, no per-row loop."""
        out = {}
        ids = table.column("input_ids").combine_chunks()
        lengths = np.diff(ids.offsets.to_numpy())
        longest = int(lengths.max())
        if self.multiple:
            longest = -(-longest // self.multiple) * self.multiple
        mask = np.arange(longest)[None, :] < lengths[:, None]
        for key, pad in (("input_ids", self.pad_token_id), ("token_type_ids", 0)):
            if key not in table.column_names:
                continue
            values = table.column(key).combine_chunks().flatten().to_numpy()
            padded = np.full((len(table), longest), pad, dtype=np.int64)
            padded[mask] = values  # rows are contiguous in the flattened values, in row order
            out[key] = torch.from_numpy(padded)
        out["attention_mask"] = torch.from_numpy(mask.astype(np.int64))
        out["labels"] = torch.from_numpy(table.column("label").to_numpy().astype(np.float32))
        out["example_id"] = torch.from_numpy(table.column("example_id").to_numpy().astype(np.int64))
        return out
