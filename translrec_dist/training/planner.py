"""``translrec plan``: per-GPU memory of DDP and ZeRO-1/2/3 (with and without CPU offload) before renting GPUs.

Model states follow DeepSpeed's own estimators (``estimate_zero2/3_model_states_mem_needs``, mixed precision):
ZeRO-2 = 2Ψ + 18Ψ/N, ZeRO-2 offload = 2Ψ, ZeRO-3 = 4·largest_layer + 18Ψ/N, ZeRO-3 offload optimizer =
4·largest_layer + 2Ψ/N, offload all = 4·largest_layer. ZeRO-1 keeps full 16-bit gradients (4Ψ + 16Ψ/N); DDP
under autocast keeps fp32 weights, gradients and two AdamW moments (16Ψ). In fp32 (``train.precision: no``)
there are no 16-bit copies: DeepSpeed keeps the fp32 weights plus an fp32 master partition (measured by
``bench/memory.py``). Activations: Korthikanti et al. 2022 (34·s·b·h bytes per layer in 16 bit, plus 5·a·s²·b
when attention probabilities are materialised, i.e. ``attn_implementation: eager``). With
``model.gradient_checkpointing`` each layer keeps only its input (2·s·b·h bytes) and one layer's activations
are rebuilt at a time in the backward pass (Korthikanti et al., full recomputation).

Parameter counts never download: the encoder is built on the meta device from the tiny config, a local
``config.json``, the Hugging Face cache (``AutoConfig``, ``local_files_only``), or, last, a built-in table of
common architectures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from translrec_dist.errors import ConfigError
from translrec_dist.models.source import model_source

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

GB = 1e9
HEADROOM = 0.9  # CUDA context, allocator fragmentation, communication buffers

# Architectures a user can plan for by hub id without a download (values from their config.json).
_BERT = dict(model_type="bert", max_position_embeddings=512, type_vocab_size=2)
KNOWN_ARCHITECTURES: dict[str, dict] = {
    "bert-base-uncased": {**_BERT, "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-base-cased": {**_BERT, "vocab_size": 28996, "hidden_size": 768, "num_hidden_layers": 12,
                        "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-large-uncased": {**_BERT, "vocab_size": 30522, "hidden_size": 1024, "num_hidden_layers": 24,
                           "num_attention_heads": 16, "intermediate_size": 4096},
    "bert-large-cased": {**_BERT, "vocab_size": 28996, "hidden_size": 1024, "num_hidden_layers": 24,
                         "num_attention_heads": 16, "intermediate_size": 4096},
    "sentence-transformers/all-MiniLM-L6-v2": {**_BERT, "vocab_size": 30522, "hidden_size": 384,
                                               "num_hidden_layers": 6, "num_attention_heads": 12,
                                               "intermediate_size": 1536},
    "roberta-base": {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514,
                     "type_vocab_size": 1},
    "roberta-large": {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 1024, "num_hidden_layers": 24,
                      "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 514,
                      "type_vocab_size": 1},
}
for _alias in ("google-bert/bert-base-uncased", "google-bert/bert-large-uncased"):
    KNOWN_ARCHITECTURES[_alias] = KNOWN_ARCHITECTURES[_alias.split("/")[1]]

STRATEGIES = [("ddp", "none"), ("zero1", "none"), ("zero2", "none"), ("zero3", "none"),
              ("zero1", "optimizer"), ("zero2", "optimizer"), ("zero3", "optimizer"), ("zero3", "all")]


@dataclass
class ModelSize:
    name: str
    params: int  # encoder (without pooler) + scoring head
    largest_layer: int  # parameters of the largest single module (what ZeRO-3 gathers at once)
    hidden: int
    layers: int
    heads: int


@dataclass
class Estimate:
    distributed: str
    offload: str
    params: float  # bytes per GPU
    grads: float
    optimizer: float
    activations: float
    cpu_per_node: float  # host RAM for offloaded states

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations


def encoder_config(cfg: RunConfig):
    from transformers import AutoConfig

    from translrec_dist.models.encoders import tiny_bert_config

    m = cfg.model
    kind, name = model_source(cfg)
    if kind == "tiny":
        return "tiny", tiny_bert_config(cfg)
    try:  # a local directory or the Hugging Face cache; never the network
        return name, AutoConfig.from_pretrained(name, trust_remote_code=m.trust_remote_code, local_files_only=True)
    except (OSError, ValueError):
        pass
    if name in KNOWN_ARCHITECTURES:
        spec = dict(KNOWN_ARCHITECTURES[name])
        return name, AutoConfig.for_model(spec.pop("model_type"), **spec)
    raise ConfigError(f"plan: no config.json for {name!r} in a local directory or the Hugging Face cache, and it is "
                      f"not one of the built-in architectures ({', '.join(sorted(KNOWN_ARCHITECTURES))}); download "
                      f"it once (huggingface-cli download {name} config.json) or pass a local model directory")


def model_size(cfg: RunConfig, task=None) -> ModelSize:
    """Parameters of the run's model: the encoder's, sized on the meta device, plus what the task builds around it
    (``Task.planned_parameters``; without a task, a cross-encoder's one-unit head)."""
    from transformers import AutoModel

    from translrec_dist.models.encoders import drop_pooler

    name, config = encoder_config(cfg)
    with torch.device("meta"):  # shapes only: no memory, no download
        encoder = drop_pooler(AutoModel.from_config(config))
    params = sum(p.numel() for p in encoder.parameters())
    params = task.planned_parameters(cfg, params, config) if task is not None else params + config.hidden_size + 1
    largest = max(sum(p.numel() for p in mod.parameters(recurse=False)) for mod in encoder.modules())
    return ModelSize(name, params, largest, config.hidden_size, config.num_hidden_layers,
                     config.num_attention_heads)


def activation_bytes(cfg: RunConfig, size: ModelSize, mixed: bool) -> float:
    s, b, h, a = cfg.data.max_length, cfg.train.micro_batch_size, size.hidden, size.heads
    per_layer = 34 * s * b * h + (5 * a * s * s * b if cfg.model.attn_implementation == "eager" else 0)
    if cfg.model.gradient_checkpointing:  # layer inputs kept, one layer rebuilt at a time
        return (2 * s * b * h * size.layers + per_layer) * (1 if mixed else 2)
    return per_layer * size.layers * (1 if mixed else 2)


def estimate(size: ModelSize, distributed: str, offload: str, gpus_per_node: int, nodes: int, mixed: bool,
             activations: float) -> Estimate:
    psi, n, big, gpn = size.params, gpus_per_node * nodes, 4 * size.largest_layer, gpus_per_node
    w = 2 if mixed else 4  # bytes of the working copy of weights and gradients
    master = 4  # fp32 master partition (DeepSpeed keeps one even in fp32)
    # Host RAM per node as DeepSpeed estimates it; every rank first builds the full model on the host
    # (no zero.Init, see training/distributed.py), hence its zero_init=False figures.
    load = psi * 4 * gpn * 1.5
    if distributed == "ddp":
        return Estimate("ddp", "none", 4 * psi, 4 * psi, 8 * psi, activations, load)
    if distributed in ("zero1", "zero2"):
        if offload == "optimizer":
            return Estimate(distributed, offload, w * psi, 0.0, 0.0, activations, psi * max(4 * n, 16) * 1.5)
        # ZeRO-1 reduces full 16-bit gradients; ZeRO-2 keeps only its partition of them.
        grads = (w * psi if distributed == "zero1" else w * psi / n) + (4 * psi / n if mixed else 0)
        return Estimate(distributed, offload, w * psi, grads, (master + 8) * psi / n, activations, load)
    if offload == "all":
        return Estimate("zero3", offload, big, 0.0, 0.0, activations, psi * max(4 * gpn, 18 / nodes) * 1.5)
    if offload == "optimizer":
        return Estimate("zero3", offload, big + w * psi / n, 0.0, 0.0, activations,
                        psi * max(4 * gpn, 16 / nodes) * 1.5)
    return Estimate("zero3", "none", big + w * psi / n, 4 * psi / n, (master + 8) * psi / n, activations, load)


def parse_bytes(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?i?B?)\s*", text, flags=re.IGNORECASE)
    if not m:
        raise ConfigError(f"--gpu-mem {text!r}: give a size such as 80GB or 40GiB")
    unit = m.group(2).upper().rstrip("B")
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
    return float(m.group(1)) * scale[unit]


def plan(cfg: RunConfig, gpus_per_node: int, nodes: int, gpu_mem: float, task=None) -> tuple[
        ModelSize, list[Estimate], Estimate | None]:
    if gpus_per_node < 1 or nodes < 1:
        raise ConfigError("plan: --gpus-per-node and --nodes must be >= 1")
    size = model_size(cfg, task)
    mixed = cfg.train.precision in ("bf16", "fp16")
    acts = activation_bytes(cfg, size, mixed)
    rows = [estimate(size, d, o, gpus_per_node, nodes, mixed, acts) for d, o in STRATEGIES]
    best = next((r for r in rows if r.total <= HEADROOM * gpu_mem), None)
    return size, rows, best


def format_plan(cfg: RunConfig, gpus_per_node: int, nodes: int, gpu_mem: float, task=None) -> str:
    size, rows, best = plan(cfg, gpus_per_node, nodes, gpu_mem, task)
    n = gpus_per_node * nodes
    lines = [f"model {size.name} (task={cfg.task}): {size.params / 1e6:.1f}M parameters (largest layer "
             f"{size.largest_layer / 1e6:.1f}M)",
             f"{nodes} node(s) x {gpus_per_node} GPU(s) = {n}, {gpu_mem / GB:.0f} GB each; precision "
             f"{cfg.train.precision}, micro-batch {cfg.train.micro_batch_size}, sequence {cfg.data.max_length}"
             f"{', gradient checkpointing' if cfg.model.gradient_checkpointing else ''}",
             "",
             f"{'strategy':<12}{'offload':<10}{'params':>9}{'grads':>9}{'optim':>9}{'activ':>9}{'total/GPU':>11}"
             f"{'CPU/node':>10}  fits",
             ]
    for r in rows:
        fits = "yes" if r.total <= HEADROOM * gpu_mem else "no"
        lines.append(f"{r.distributed:<12}{r.offload:<10}{r.params / GB:>9.2f}{r.grads / GB:>9.2f}"
                     f"{r.optimizer / GB:>9.2f}{r.activations / GB:>9.2f}{r.total / GB:>11.2f}"
                     f"{r.cpu_per_node / GB:>10.1f}  {fits}")
    lines.append(f"(GB; fits = total <= {HEADROOM:.0%} of GPU memory)")
    if best is None:
        lines.append("nothing fits: lower train.micro_batch_size (raise train.grad_accum) or data.max_length, "
                     + ("" if cfg.model.gradient_checkpointing else "set model.gradient_checkpointing=true, ")
                     + "or add GPUs")
    else:
        lines.append(f"recommended: train.distributed={best.distributed} train.offload={best.offload}")
    return "\n".join(lines)
