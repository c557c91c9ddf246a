"""The frozen lower layers of a partly trained encoder, run once per item and cached (``encoder: top_layers``).

When only the top N of L layers train, the token states after layer L-N never change during training: they
are a function of the frozen weights (embeddings and layers 0..L-N-1) and of the item's tokens. They are
computed once (eval mode: a frozen part has no dropout), kept ragged (only real tokens: an item of k tokens
is k rows of ``states``), and every training step and catalog refresh runs only the top N layers over them.

Size: one row of ``hidden`` fp16 values per real token. ml-100k (1,682 titles, about 11 tokens each, MiniLM
width 384) is ~14 MB; a catalog of 1M items of 32 tokens with a 768-wide encoder is ~49 GB, so beyond a few
hundred thousand items keep max_length short or use ``encoder: full``/frozen vectors instead.

The file is keyed by a fingerprint of everything the states depend on: the frozen part's weights, the number
of frozen layers, and the catalog's token ids (the texts through the tokenizer at ``data.max_length``). A
changed encoder, tokenizer, max_length or text gives another key, so a stale file is never read.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from safetensors.torch import load_file, save
from torch import nn

from translrec_dist import safe_io
from translrec_dist.errors import ConfigError
from translrec_dist.models.encoding import encoding_batches, eval_mode
from translrec_dist.models.transfer import transformer_layers

log = logging.getLogger(__name__)
STATE_DTYPE = torch.float16  # half the memory and disk of fp32; the top layers compute in the run's precision


def check_layer_split(encoder: nn.Module, frozen_layers: int) -> None:
    """The cache runs the encoder's parts itself: BERT-family encoders (``embeddings`` + a layer list)."""
    layers = transformer_layers(encoder)
    if not hasattr(base_model(encoder), "embeddings") or getattr(encoder.config, "is_decoder", False):
        raise ConfigError(f"model.sequence.layer_cache needs a BERT-family encoder (embeddings + a stack of "
                          f"layers); {type(encoder).__name__} is not one: set model.sequence.layer_cache=false")
    if not 0 < frozen_layers < len(layers) + 1:
        raise ConfigError(f"model.sequence.train_layers leaves {frozen_layers} frozen layers of {len(layers)}: "
                          "train fewer layers, or use encoder=full")


def base_model(encoder: nn.Module) -> nn.Module:
    """The plain Hugging Face model under a peft wrapper (LoRA)."""
    inner = getattr(encoder, "base_model", None)
    return getattr(inner, "model", encoder) if inner is not None and inner is not encoder else encoder


def attention_bias(encoder: nn.Module, mask: torch.Tensor, hidden: torch.Tensor):
    """The 4-D attention mask the encoder's layers expect (as its own forward builds it)."""
    config = base_model(encoder).config
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:  # transformers < 4.53
        return base_model(encoder).get_extended_attention_mask(mask, mask.shape, dtype=hidden.dtype)
    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)


def run_layers(layers, encoder: nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    bias = attention_bias(encoder, mask, hidden)
    for layer in layers:
        out = layer(hidden, bias)
        hidden = out[0] if isinstance(out, tuple) else out  # transformers < 5 returns a tuple
    return hidden


def lower_forward(encoder: nn.Module, frozen_layers: int, batch: dict) -> torch.Tensor:
    """Token states after the embeddings and the first ``frozen_layers`` layers."""
    embeddings = base_model(encoder).embeddings
    kwargs = {k: batch[k] for k in ("input_ids", "token_type_ids") if k in batch}
    hidden = embeddings(**kwargs)
    return run_layers(transformer_layers(encoder)[:frozen_layers], encoder, hidden, batch["attention_mask"])


def frozen_fingerprint(encoder: nn.Module, frozen_layers: int, rows) -> str:
    """A hash of the frozen part's weights and the catalog's token ids: the cache key."""
    h = hashlib.sha256(f"{type(base_model(encoder)).__name__}|{frozen_layers}".encode())
    parts = [base_model(encoder).embeddings, *transformer_layers(encoder)[:frozen_layers]]
    for i, part in enumerate(parts):
        for name, tensor in sorted(part.state_dict().items()):
            if "lora_" in name:  # adapters live on the trained layers only; never part of the key
                continue
            t = tensor.detach().cpu().contiguous()
            h.update(f"{i}.{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for name in ("input_ids", "token_type_ids"):
        if name in rows.column_names:
            column = rows.column(name).combine_chunks()
            h.update(name.encode())
            h.update(pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
            h.update(column.flatten().to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
    return h.hexdigest()[:20]


class LowerStates:
    """Ragged token states of every catalog item after the frozen layers: ``states`` [tokens x hidden], item
    i's rows ``offsets[i]:offsets[i+1]``."""

    def __init__(self, states: torch.Tensor, offsets: torch.Tensor):
        self.states, self.offsets = states, offsets

    @property
    def num_items(self) -> int:
        return len(self.offsets) - 1

    def lengths(self, index: torch.Tensor) -> torch.Tensor:
        return self.offsets[index + 1] - self.offsets[index]

    def batch(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """([B x T x hidden] states, [B x T] attention mask) of items ``index``, padded to their longest."""
        index = index.to(self.offsets.device)
        lengths = self.lengths(index)
        width = int(lengths.max()) if len(index) else 0
        cols = torch.arange(width, device=index.device)
        mask = cols.unsqueeze(0) < lengths.unsqueeze(1)
        rows = (self.offsets[index].unsqueeze(1) + cols).clamp(max=max(len(self.states) - 1, 0))
        hidden = self.states[rows].to(dtype) * mask.unsqueeze(-1)
        return hidden, mask.long()

    def to(self, device) -> LowerStates:
        return LowerStates(self.states.to(device), self.offsets.to(device))


@torch.no_grad()
def compute_lower_states(encoder: nn.Module, frozen_layers: int, rows, pad_token_id: int, batch_size: int = 128,
                         device: torch.device | str = "cpu", dtype: torch.dtype = STATE_DTYPE) -> LowerStates:
    """Run the frozen part over every row once (eval mode, length-sorted batches)."""
    lengths = pc.list_value_length(rows.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(lengths)]))
    hidden_size = base_model(encoder).config.hidden_size
    states = torch.empty(int(offsets[-1]), hidden_size, dtype=dtype)
    with eval_mode(encoder), torch.inference_mode():
        for positions, batch in encoding_batches(rows, pad_token_id, batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = lower_forward(encoder, frozen_layers, batch).to(dtype).cpu()
            for j, item in enumerate(positions.tolist()):
                if item >= 0:
                    states[offsets[item]:offsets[item + 1]] = out[j, :lengths[item]]
    return LowerStates(states, offsets)


def cached_lower_states(cache_dir: Path, root: Path, encoder: nn.Module, frozen_layers: int, rows,
                        pad_token_id: int, write: bool = True) -> LowerStates:
    """The catalog's lower-layer states from ``cache_dir`` (under the run directory ``root``), computed and
    written there when missing. ``write=False``: compute without writing (another process owns the file)."""
    check_layer_split(encoder, frozen_layers)
    key = frozen_fingerprint(encoder, frozen_layers, rows)
    path = Path(cache_dir) / f"lower_states-{key}.safetensors"
    if path.is_file():
        safe_io.check_regular(path, "cached lower-layer states")
        tensors = load_file(str(path))
        log.info("lower-layer states of %d items from %s", len(tensors["offsets"]) - 1, path)
        return LowerStates(tensors["states"], tensors["offsets"])
    lower = compute_lower_states(encoder, frozen_layers, rows, pad_token_id)
    if write:
        safe_io.make_dirs(cache_dir, root)
        safe_io.write_bytes(path, save({"states": lower.states, "offsets": lower.offsets}), root)
        log.info("encoded %d items through %d frozen layers (%.1f MB) -> %s", lower.num_items, frozen_layers,
                 lower.states.numel() * lower.states.element_size() / 2**20, path)
    return lower
