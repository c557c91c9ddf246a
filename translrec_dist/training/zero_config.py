"""DeepSpeed ZeRO configuration: pick the JSON, validate it, fill its ``"auto"`` values from the run config.

The run YAML is the single source of truth. A JSON value left ``"auto"`` is filled from it; a value written
explicitly that contradicts it stops the run with a message naming both, because DeepSpeed would otherwise win
with only a warning (accelerate ``_prepare_deepspeed``). Everything here runs before any process group starts.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

from translrec_dist.errors import ConfigError
from translrec_dist.training.builtin_configs import builtin_dir, packaged_deepspeed

if TYPE_CHECKING:
    from translrec_dist.config.schema import RunConfig

BUILTIN_DIR = builtin_dir("deepspeed")  # inside the package: found by any install (importlib.resources)
STAGES = {"zero1": 1, "zero2": 2, "zero3": 3}
# Values the client AdamW and schedule take from the YAML; the JSON may only leave them "auto" or repeat them.
_OPTIMIZER_TYPES = ("adam", "adamw")
_SCHEDULER_TYPES = ("warmuplr", "warmupdecaylr", "warmupcosinelr")


def uses_deepspeed(cfg: RunConfig) -> bool:
    return cfg.train.distributed != "ddp" or cfg.train.deepspeed_config is not None


def builtin_config_path(distributed: str, offload: str) -> Traversable:
    stage = STAGES[distributed]
    offloaded = (stage == 2 and offload == "optimizer") or (stage == 3 and offload == "all")
    return BUILTIN_DIR / f"zero{stage}{'_offload' if offloaded else ''}.json"


def read_deepspeed_json(path: str | Path | Traversable, key: str = "train.deepspeed_config") -> dict:
    p = Path(path) if isinstance(path, str) else path
    if not p.is_file():
        raise ConfigError(f"{key}: DeepSpeed config {p} not found. Pass the path of a JSON file, e.g. "
                          f"configs/deepspeed/zero2.json, or use train.distributed=zero1|zero2|zero3")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{key}: {p} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{key}: {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: {p} must hold a JSON object (the DeepSpeed config), got {type(data).__name__}")
    return data


def launcher_deepspeed_file() -> Path | Traversable | None:
    """The DeepSpeed JSON named by an Accelerate config (``deepspeed_config_file``), if launched that way."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return None
    path = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    if path == "none":
        return None
    # The shipped accelerate configs name configs/deepspeed/... relative to a checkout of the repository.
    return packaged_deepspeed(path) or Path(path)


def select_deepspeed_json(cfg: RunConfig) -> tuple[dict, Path] | None:
    """(raw JSON, its path) for this run, or None for plain DDP. Validates stage and offload choices."""
    t, where = cfg.train, cfg.source
    user = t.deepspeed_config or launcher_deepspeed_file()
    if user is None and t.distributed == "ddp":
        if t.offload != "none":
            raise ConfigError(f"train.offload={t.offload} needs ZeRO; set train.distributed=zero2 or zero3 ({where})")
        return None
    path = Path(user) if isinstance(user, str) else user or builtin_config_path(t.distributed, t.offload)
    raw = read_deepspeed_json(path)
    zero = raw.get("zero_optimization")
    if not isinstance(zero, dict):
        raise ConfigError(f"{path}: needs a \"zero_optimization\" object with a \"stage\" (0-3)")
    stage = zero.get("stage", "auto")
    if stage == "auto":
        if t.distributed == "ddp":
            raise ConfigError(f"{path}: zero_optimization.stage is \"auto\"; set train.distributed=zero1|zero2|zero3 "
                              f"({where}) or write the stage in the JSON")
        stage = STAGES[t.distributed]
    if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
        raise ConfigError(f"{path}: zero_optimization.stage={stage!r} is not a ZeRO stage; use 0, 1, 2 or 3")
    if t.distributed != "ddp" and stage != STAGES[t.distributed]:
        raise ConfigError(f"{path}: zero_optimization.stage={stage} contradicts train.distributed={t.distributed} "
                          f"({where}); make them agree")
    param_dev = _device(zero.get("offload_param"))
    if t.offload == "all" and stage != 3:
        raise ConfigError(f"train.offload=all offloads parameters, which only ZeRO-3 can do (stage is {stage}); "
                          f"use train.offload=optimizer or train.distributed=zero3 ({where})")
    if param_dev not in ("none", None) and stage != 3:
        raise ConfigError(f"{path}: zero_optimization.offload_param needs stage 3 (stage is {stage}); only ZeRO-3 "
                          f"partitions parameters, so remove offload_param or use stage 3")
    if stage == 3 and zero.get("stage3_gather_16bit_weights_on_model_save") is False:
        raise ConfigError(f"{path}: stage3_gather_16bit_weights_on_model_save is false, so the final export would "
                          f"be empty; set it to true")
    raw = copy.deepcopy(raw)
    raw["zero_optimization"]["stage"] = stage
    return raw, path


def _device(block: Any) -> str | None:
    return block.get("device", "none") if isinstance(block, dict) else None


def resolve_deepspeed_config(cfg: RunConfig, world_size: int, precision: str) -> dict | None:
    """The DeepSpeed config dict with every YAML-owned "auto" filled; None for plain DDP."""
    selected = select_deepspeed_json(cfg)
    if selected is None:
        return None
    ds, path = selected
    t, where = cfg.train, cfg.source
    zero = ds["zero_optimization"]

    def fill(node: dict, key: str, value, yaml_key: str, label: str | None = None):
        current = node.get(key, "auto")
        if current == "auto":
            node[key] = value
        elif current != value:
            raise ConfigError(f"{path}: {label or key}={current!r} contradicts {yaml_key} ({where}), which gives "
                              f"{value!r}. Set it to \"auto\" in the JSON (the YAML is the source of truth) or change "
                              f"the YAML")

    fill(ds, "train_micro_batch_size_per_gpu", t.micro_batch_size, "train.micro_batch_size")
    fill(ds, "gradient_accumulation_steps", t.grad_accum, "train.grad_accum")
    fill(ds, "train_batch_size", t.micro_batch_size * t.grad_accum * world_size,
         f"train.micro_batch_size x train.grad_accum x {world_size} processes")
    fill(ds, "gradient_clipping", float(t.max_grad_norm or 0.0), "train.max_grad_norm")
    for kind in ("bf16", "fp16"):
        block = ds.setdefault(kind, {"enabled": "auto"})
        if isinstance(block, dict):
            fill(block, "enabled", precision == kind, f"train.precision={precision}", f"{kind}.enabled")
    if zero["stage"] == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if t.offload in ("optimizer", "all"):
        _fill_offload(zero, "offload_optimizer", path, where, t.offload)
    if t.offload == "all":
        _fill_offload(zero, "offload_param", path, where, t.offload)
    _drop_optimizer_blocks(ds, cfg, path)
    return ds


def fill_hidden_size_buckets(ds: dict, hidden_size: int) -> None:
    """The ZeRO bucket sizes left "auto" scale with the model's hidden size. Accelerate fills them only from
    ``model.config``, which a bi-encoder or a masked-LM wrapper does not have (it stops with "Can't find
    model.config entry"); the task tells the hidden size of any model, and the same formulas as accelerate's
    give a cross-encoder the same values as before."""
    zero = ds.get("zero_optimization", {})
    for key, value in (("reduce_bucket_size", hidden_size * hidden_size),
                       ("stage3_prefetch_bucket_size", int(0.9 * hidden_size * hidden_size)),
                       ("stage3_param_persistence_threshold", 10 * hidden_size)):
        if zero.get(key) == "auto":
            zero[key] = value


def _fill_offload(zero: dict, key: str, path: Path, where: str, offload: str) -> None:
    block = zero.setdefault(key, {})
    if block.get("device", "auto") == "none":
        raise ConfigError(f"{path}: zero_optimization.{key}.device=none contradicts train.offload={offload} "
                          f"({where}); remove the block or set train.offload=none")
    if block.get("device", "auto") == "auto":
        block["device"] = "cpu"


def _drop_optimizer_blocks(ds: dict, cfg: RunConfig, path: Path) -> None:
    """translrec builds AdamW and the schedule from the YAML; a JSON optimizer/scheduler may only agree with it."""
    t, where = cfg.train, cfg.source
    opt = ds.pop("optimizer", None)
    if opt is not None:
        if str(opt.get("type", "")).lower() not in _OPTIMIZER_TYPES:
            raise ConfigError(f"{path}: optimizer type {opt.get('type')!r}: translrec trains with AdamW configured "
                              f"by train.lr/train.weight_decay; remove the optimizer block")
        for key, value, yaml_key in (("lr", t.lr, "train.lr"), ("weight_decay", t.weight_decay,
                                                                "train.weight_decay")):
            given = opt.get("params", {}).get(key, "auto")
            if given != "auto" and float(given) != float(value):
                raise ConfigError(f"{path}: optimizer.params.{key}={given} contradicts {yaml_key}={value} ({where}); "
                                  f"set it to \"auto\" or remove the optimizer block")
    sched = ds.pop("scheduler", None)
    if sched is not None:
        if str(sched.get("type", "")).lower() not in _SCHEDULER_TYPES:
            raise ConfigError(f"{path}: scheduler type {sched.get('type')!r}: translrec schedules the learning rate "
                              f"from train.schedule/train.warmup_ratio; remove the scheduler block")
        for key, given in sched.get("params", {}).items():
            if given != "auto":
                raise ConfigError(f"{path}: scheduler.params.{key}={given}: the schedule comes from train.schedule="
                                  f"{t.schedule} and train.warmup_ratio={t.warmup_ratio} ({where}); set it to "
                                  f"\"auto\" or remove the scheduler block")
