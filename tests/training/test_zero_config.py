"""ZeRO configuration: bad input fails in preflight, before any process group, with the file and the fix;
"auto" is filled from the YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from translrec_dist.errors import ConfigError
from translrec_dist.training.preflight import check_world_size, preflight
from translrec_dist.training.resume import check_resume_compatible
from translrec_dist.training.zero_config import BUILTIN_DIR, resolve_deepspeed_config


def write_json(tmp_path: Path, data) -> str:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_missing_deepspeed_json_names_the_file(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.json not found"):
        preflight(tiny_cfg(f"train.deepspeed_config={tmp_path / 'nope.json'}"), 1)


def test_malformed_deepspeed_json_names_file_and_position(tiny_cfg, tmp_path):
    path = write_json(tmp_path, '{"zero_optimization": {"stage": 2,}}')
    with pytest.raises(ConfigError, match=r"ds\.json is not valid JSON: .* line 1, column 35"):
        preflight(tiny_cfg(f"train.deepspeed_config={path}"), 1)


@pytest.mark.parametrize("stage", [4, -1, "two"])
def test_stage_outside_0_to_3(tiny_cfg, tmp_path, stage):
    path = write_json(tmp_path, {"zero_optimization": {"stage": stage}})
    with pytest.raises(ConfigError, match="is not a ZeRO stage; use 0, 1, 2 or 3"):
        preflight(tiny_cfg(f"train.deepspeed_config={path}"), 1)


def test_parameter_offload_needs_stage_3(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="train.offload=all offloads parameters, which only ZeRO-3"):
        preflight(tiny_cfg("train.distributed=zero2", "train.offload=all"), 1)
    path = write_json(tmp_path, {"zero_optimization": {"stage": 1, "offload_param": {"device": "cpu"}}})
    with pytest.raises(ConfigError, match="offload_param needs stage 3"):
        preflight(tiny_cfg(f"train.deepspeed_config={path}"), 1)


def test_offload_without_zero_and_contradicting_stage(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="train.offload=optimizer needs ZeRO"):
        preflight(tiny_cfg("train.offload=optimizer"), 1)
    path = write_json(tmp_path, {"zero_optimization": {"stage": 2}})
    with pytest.raises(ConfigError, match="stage=2 contradicts train.distributed=zero3"):
        preflight(tiny_cfg(f"train.deepspeed_config={path}", "train.distributed=zero3"), 1)


def test_zero3_without_16bit_gather_on_save_is_refused(tiny_cfg, tmp_path):
    path = write_json(tmp_path, {"zero_optimization": {"stage": 3,
                                                       "stage3_gather_16bit_weights_on_model_save": False}})
    with pytest.raises(ConfigError, match="export would be empty"):
        preflight(tiny_cfg(f"train.deepspeed_config={path}"), 1)


def test_global_batch_not_matching_world_size_fails_before_the_process_group(tiny_cfg, monkeypatch):
    from translrec_dist.training.distributed import build_accelerator

    cfg = tiny_cfg("train.global_batch_size=24", "train.distributed=zero2")  # 8 x 1 x 2 = 16
    with pytest.raises(ConfigError, match=r"world_size=2 = 16"):
        check_world_size(cfg, 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="global_batch_size=24"):
        build_accelerator(cfg)  # raises before accelerate touches torch.distributed


def test_builtin_configs_leave_yaml_values_auto_and_get_them_filled(tiny_cfg):
    for name in ("zero1", "zero2", "zero3", "zero2_offload", "zero3_offload"):
        raw = json.loads((BUILTIN_DIR / f"{name}.json").read_text())
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                    "gradient_clipping"):
            assert raw[key] == "auto", (name, key)
    cfg = tiny_cfg("train.distributed=zero3", "train.offload=all", "train.grad_accum=3", "train.max_grad_norm=0.5")
    ds = resolve_deepspeed_config(cfg, world_size=4, precision="bf16")
    assert ds["train_micro_batch_size_per_gpu"] == 8 and ds["gradient_accumulation_steps"] == 3
    assert ds["train_batch_size"] == 8 * 3 * 4 and ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] is True and ds["fp16"]["enabled"] is False
    z = ds["zero_optimization"]
    assert z["stage"] == 3 and z["stage3_gather_16bit_weights_on_model_save"] is True
    assert z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    plain = resolve_deepspeed_config(tiny_cfg("train.distributed=zero2", "train.max_grad_norm=null"), 2, "no")
    assert "offload_optimizer" not in plain["zero_optimization"] and plain["gradient_clipping"] == 0.0


def test_explicit_json_value_contradicting_the_yaml_stops_the_run(tiny_cfg, tmp_path):
    path = write_json(tmp_path, {"train_micro_batch_size_per_gpu": 16, "zero_optimization": {"stage": 2}})
    cfg = tiny_cfg(f"train.deepspeed_config={path}")
    with pytest.raises(ConfigError, match=r"train_micro_batch_size_per_gpu=16 contradicts train.micro_batch_size"):
        resolve_deepspeed_config(cfg, 2, "no")
    path = write_json(tmp_path, {"optimizer": {"type": "AdamW", "params": {"lr": 0.1}},
                                 "zero_optimization": {"stage": 2}})
    with pytest.raises(ConfigError, match=r"optimizer.params.lr=0.1 contradicts train.lr"):
        resolve_deepspeed_config(tiny_cfg(f"train.deepspeed_config={path}"), 2, "no")
    agreeing = {"train_micro_batch_size_per_gpu": 8, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}},
                "zero_optimization": {"stage": 1}}
    ds = resolve_deepspeed_config(tiny_cfg(f"train.deepspeed_config={write_json(tmp_path, agreeing)}"), 2, "no")
    assert "optimizer" not in ds and ds["zero_optimization"]["stage"] == 1  # the client AdamW implements it


def test_resume_checks_strategy_and_world_size_before_loading(tiny_cfg):
    cfg = tiny_cfg()
    state = {"step": 4, "world_size": 2, "micro_batch_size": 8, "grad_accum": 1, "total_steps": 9,
             "distributed": "zero3"}
    assert check_resume_compatible(cfg, state, 2, Path("ck"), 3, 1) is False  # same setup: loads as it is
    # Another world size: re-partitioned through a universal checkpoint, when the global batch stays 16 ...
    assert check_resume_compatible(tiny_cfg("train.micro_batch_size=4"), state, 4, Path("ck"), 3, 1) is True
    # ... else it stops before loading and says how to go on
    with pytest.raises(ConfigError, match=r"global batch of 16.*this run has 32.*micro_batch_size x grad_accum = 4"
                                          r".*translrec export"):
        check_resume_compatible(cfg, state, 4, Path("ck"), 3, 1)
    with pytest.raises(ConfigError, match="written by a zero3 run; this run uses ddp"):
        check_resume_compatible(cfg, state, 2, Path("ck"), None, 1)
    ddp = {**state, "distributed": "ddp", "world_size": 1, "micro_batch_size": 16}
    check_resume_compatible(cfg, ddp, 2, Path("ck"), None, 1)  # DDP: same global batch on more ranks is fine
