"""Transfer-learning knobs on a pretrained encoder: freezing, LoRA adapters, layer-wise learning-rate decay.

Freezing the embeddings and lower layers keeps what pretraining learned about language when the
recommendation data is small; layer-wise decay (ULMFiT, ELECTRA) does the same softly.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

from torch import nn

from translrec_dist.errors import ConfigError

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer blocks (BERT: encoder.layer; DistilBERT: transformer.layer)."""
    n = getattr(encoder.config, "num_hidden_layers", None)
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(f"cannot find the {n} transformer layers of {type(encoder).__name__} to freeze")


def apply_transfer_knobs(encoder: nn.Module, cfg: RunConfig) -> nn.Module:
    m = cfg.model
    if m.freeze_embeddings:
        embeddings = encoder.get_input_embeddings()
        owner = getattr(encoder, "embeddings", embeddings)  # BERT: word + position + type embeddings + norm
        for p in owner.parameters():
            p.requires_grad_(False)
    if m.freeze_layers:
        layers = transformer_layers(encoder)
        if m.freeze_layers > len(layers):
            raise ConfigError(f"model.freeze_layers={m.freeze_layers} but the encoder has {len(layers)} layers "
                              f"({cfg.source})")
        for layer in layers[: m.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
    if m.lora is not None:
        encoder = add_lora(encoder, cfg)
    return encoder


def add_lora(encoder: nn.Module, cfg: RunConfig) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("model.lora needs the peft package: pip install peft (or set model.lora=null)") from None
    lc = cfg.model.lora
    check_lora_targets(encoder, lc.target_modules, cfg)
    config = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=list(lc.target_modules))
    return get_peft_model(encoder, config)


def check_lora_targets(encoder: nn.Module, targets, cfg: RunConfig) -> None:
    names = {name.rsplit(".", 1)[-1] for name, _ in encoder.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigError(f"model.lora.target_modules: {missing[0]!r} is not a module of the encoder "
                          f"({cfg.source}); BERT uses query, key, value, dense")


def add_top_lora(encoder: nn.Module, cfg: RunConfig) -> nn.Module:
    """task=sequential, encoder=lora: adapters on the top ``train_layers`` layers only (model.lora's settings; unset:
    peft's defaults on query and value), so the layers below stay frozen and their states can be cached."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("model.sequence.encoder=lora needs the peft package: pip install peft") from None
    lc = cfg.model.lora
    settings = {"target_modules": ["query", "value"]}
    if lc is not None:
        check_lora_targets(encoder, lc.target_modules, cfg)
        settings = {"r": lc.r, "lora_alpha": lc.alpha, "lora_dropout": lc.dropout,
                    "target_modules": list(lc.target_modules)}
    n = len(transformer_layers(encoder))
    top = list(range(n - min(cfg.model.sequence.train_layers, n), n))
    return get_peft_model(encoder, LoraConfig(**settings, layers_to_transform=top, layers_pattern="layer"))


def merged_encoder(module: nn.Module, state: dict) -> tuple[nn.Module, dict]:
    """(plain encoder, its state dict) for saving: LoRA adapters are merged into the base weights."""
    if not hasattr(module, "merge_and_unload"):
        return module, state
    clone = copy.deepcopy(module).cpu()
    clone.load_state_dict(state)
    plain = clone.merge_and_unload()
    return plain, {k: v.contiguous() for k, v in plain.state_dict().items()}


def save_encoder(target, module: nn.Module, state_dict: dict, prefix: str) -> None:
    """Save the ``prefix`` part of a full state dict as a plain Hugging Face model in ``target`` (adapters merged).

    Every export writes its encoders through here. Refuses an empty part: under ZeRO-3 without
    stage3_gather_16bit_weights_on_model_save the gathered state dict holds empty tensors.
    """
    state = {k[len(prefix):]: v.contiguous() for k, v in state_dict.items() if k.startswith(prefix)}
    if not state or any(v.numel() == 0 for v in state.values()):
        raise RuntimeError(f"refusing to write an empty export: the state dict has no {prefix!r} weights "
                           "(under ZeRO-3 set stage3_gather_16bit_weights_on_model_save)")
    plain, state = merged_encoder(module, state)
    # Tied weights (an MLM decoder and the input embeddings) share storage; safetensors refuses duplicates.
    plain.save_pretrained(str(target), state_dict={k: v.clone() for k, v in state.items()}, safe_serialization=True)


def encoder_depth(model: nn.Module) -> int:
    """Number of transformer layers of the (first) encoder inside ``model``; 0 if there is none."""
    for module in model.modules():
        layers = getattr(getattr(module, "config", None), "num_hidden_layers", None)
        if isinstance(layers, int):
            return layers
    return 0


def layer_lr_scale(name: str, num_layers: int, decay: float) -> float:
    """decay^(distance from the top): heads x1, layer i (0-based) x decay^(L-i), embeddings x decay^(L+1)."""
    if decay == 1.0:
        return 1.0
    if "embeddings." in name and "item_ids" not in name:
        depth = 0
    elif match := _LAYER.search(name):
        depth = min(int(match.group(1)) + 1, num_layers)
    else:
        depth = num_layers + 1
    return decay ** (num_layers + 1 - depth)
