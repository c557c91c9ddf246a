"""Encoders every task builds on: a pretrained Hugging Face encoder (refusing remote code unless the user
allows it), the tiny random-init BERT of ``model.tiny`` (one ``BertConfig`` for every task and the planner),
the pooler dropped, and pooling of the last hidden state."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig

from translrec_dist.errors import ConfigError
from translrec_dist.models.encoder_options import apply_memory_options, attention_errors_as_config_errors
from translrec_dist.models.pretrained import load_whole
from translrec_dist.models.safety import refuse_remote_code
from translrec_dist.models.source import model_source

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def load_pretrained_encoder(path: str, attn_implementation: str, trust_remote_code: bool) -> nn.Module:
    refuse_remote_code(path, trust_remote_code)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    kwargs = {}
    model_cls = AutoModel._model_mapping.get(type(config), None) if not trust_remote_code else None
    if model_cls is not None and "add_pooling_layer" in inspect.signature(model_cls.__init__).parameters:
        kwargs["add_pooling_layer"] = False  # no pooler weights are saved, so none are reported missing
    encoder = load_whole(AutoModel, path, config=config, attn_implementation=attn_implementation,
                         trust_remote_code=trust_remote_code, **kwargs)
    return drop_pooler(encoder)


def drop_pooler(encoder: nn.Module) -> nn.Module:
    # The scorer reads last_hidden_state; an unused pooler would break DDP (unused parameters) and
    # waste ZeRO partitions.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def tiny_bert_config(cfg: RunConfig, vocab_size: int | None = None) -> BertConfig:
    t = cfg.model.tiny
    return BertConfig(vocab_size=vocab_size or t.vocab_size, hidden_size=t.hidden_size,
                      num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
                      intermediate_size=t.intermediate_size, max_position_embeddings=t.max_position_embeddings,
                      hidden_dropout_prob=t.hidden_dropout_prob,
                      attention_probs_dropout_prob=t.attention_probs_dropout_prob)


def build_encoder(cfg: RunConfig, vocab_size: int | None = None) -> nn.Module:
    with attention_errors_as_config_errors(cfg):  # ecosystem: attention and memory options
        return apply_memory_options(_build_encoder(cfg, vocab_size), cfg)


def _build_encoder(cfg: RunConfig, vocab_size: int | None = None) -> nn.Module:
    m = cfg.model
    kind, path = model_source(cfg)
    if kind == "tiny":
        config = tiny_bert_config(cfg, vocab_size)
        return drop_pooler(AutoModel.from_config(config, attn_implementation=m.attn_implementation))
    refuse_remote_code(path, m.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=m.trust_remote_code)
    except OSError as e:
        raise ConfigError(f"model.name_or_path: cannot load {path!r}: {e}") from None
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos and cfg.data.max_length > max_pos:
        raise ConfigError(f"data.max_length={cfg.data.max_length} exceeds the encoder's "
                          f"max_position_embeddings={max_pos} ({cfg.source})")
    if m.random_init:  # the pretrained architecture and tokenizer, random weights: the "from scratch" baseline
        return drop_pooler(AutoModel.from_config(config, attn_implementation=m.attn_implementation))
    return load_pretrained_encoder(path, m.attn_implementation, m.trust_remote_code)
