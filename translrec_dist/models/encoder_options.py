"""Encoder options that trade speed for memory or pick the attention kernel.

``model.attn_implementation`` is passed to transformers as given (sdpa, eager, flash_attention_2, flex_attention,
a kernels-hub id, ...): transformers knows which values exist and which need a package or a GPU, so its refusal is
turned into a config error instead of a second list kept here. ``model.gradient_checkpointing`` recomputes each
layer's activations in the backward pass (non-reentrant checkpointing: it works with frozen embeddings and DDP).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from torch import nn

from translrec_dist.errors import ConfigError

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig


@contextmanager
def attention_errors_as_config_errors(cfg: RunConfig):
    try:
        yield
    except (ValueError, ImportError) as e:
        text = str(e)
        if "attn_implementation" not in text and "Attention" not in text and "attention" not in text:
            raise
        raise ConfigError(f"model.attn_implementation={cfg.model.attn_implementation!r} cannot be used here: "
                          f"{text.splitlines()[0]} ({cfg.source}). Use sdpa (the default) or eager, or install what "
                          f"the message asks for") from None


def apply_memory_options(model: nn.Module, cfg: RunConfig) -> nn.Module:
    if cfg.model.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ConfigError(f"model.gradient_checkpointing: {type(model).__name__} does not support it "
                              f"({cfg.source}); set model.gradient_checkpointing=false")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model
