"""Masked-language-model head on the encoder: domain-adaptive continued pretraining on item text.

The export (``final/``) is a plain Hugging Face ``*ForMaskedLM`` checkpoint with its tokenizer; a later
fine-tune starts from it with ``model.name_or_path=RUN/final`` (AutoModel loads the encoder part).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM

from translrec_dist.models.encoder_options import apply_memory_options
from translrec_dist.models.encoders import tiny_bert_config
from translrec_dist.models.pretrained import load_whole
from translrec_dist.models.safety import refuse_remote_code
from translrec_dist.models.source import model_source
from translrec_dist.models.transfer import apply_transfer_knobs

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig


class MaskedLM(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, labels, token_type_ids=None, **_unused) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs).loss


def build_mlm_model(cfg: RunConfig, tokenizer) -> MaskedLM:
    m = cfg.model
    if model_source(cfg)[0] == "tiny":  # task=mlm refuses model.init_from (validated)
        lm = AutoModelForMaskedLM.from_config(tiny_bert_config(cfg, len(tokenizer)),
                                              attn_implementation=m.attn_implementation)
    elif m.random_init:
        refuse_remote_code(m.name_or_path, m.trust_remote_code)
        config = AutoConfig.from_pretrained(m.name_or_path, trust_remote_code=m.trust_remote_code)
        lm = AutoModelForMaskedLM.from_config(config, attn_implementation=m.attn_implementation)
    else:
        lm = load_whole(AutoModelForMaskedLM, m.name_or_path, attn_implementation=m.attn_implementation,
                        trust_remote_code=m.trust_remote_code)
    return MaskedLM(apply_transfer_knobs(apply_memory_options(lm, cfg), cfg))
