"""Masked-language-model head on the encoder: domain-adaptive continued pretraining on item text.

The export (``final/``) is a plain Hugging Face ``*ForMaskedLM`` checkpoint with its tokenizer; a later
fine-tune starts from it with ``model.name_or_path=RUN/final`` (AutoModel loads the encoder part).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM

from translrec_dist.config import RunConfig
from translrec_dist.models.cross_encoder import CONFIG_FILE, tiny_bert_config
from translrec_dist.models.encoder_options import apply_memory_options
from translrec_dist.models.transfer import apply_transfer_knobs, merged_encoder


class MaskedLM(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, labels, token_type_ids=None, **_unused) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs).loss


def build_mlm_model(cfg: RunConfig, tokenizer) -> MaskedLM:
    m = cfg.model
    if m.tiny is not None:
        lm = AutoModelForMaskedLM.from_config(tiny_bert_config(cfg, len(tokenizer)),
                                              attn_implementation=m.attn_implementation)
    elif m.random_init:
        lm = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(m.name_or_path),
                                              attn_implementation=m.attn_implementation)
    else:
        lm = AutoModelForMaskedLM.from_pretrained(m.name_or_path, attn_implementation=m.attn_implementation)
    return MaskedLM(apply_transfer_knobs(apply_memory_options(lm, cfg), cfg))  # ecosystem: memory options


def save_mlm_export(out_dir: Path, state_dict: dict, model: MaskedLM, tokenizer, cfg: RunConfig) -> None:
    from translrec_dist.config import dump_config, export_config
    from translrec_dist.models.interop import write_interop_files

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k[len("lm."):]: v.contiguous() for k, v in state_dict.items() if k.startswith("lm.")}
    if not state or any(v.numel() == 0 for v in state.values()):
        raise RuntimeError("refusing to write an empty export (under ZeRO-3 set "
                           "stage3_gather_16bit_weights_on_model_save)")
    plain, state = merged_encoder(model.lm, state)
    # Tied decoder weights share storage with the input embeddings; safetensors refuses duplicates.
    plain.save_pretrained(str(out_dir), state_dict={k: v.clone() for k, v in state.items()}, safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    dump_config(export_config(cfg), out_dir / CONFIG_FILE)
    write_interop_files(out_dir, cfg)  # ecosystem: files other tools load + model card
