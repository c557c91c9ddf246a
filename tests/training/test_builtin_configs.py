"""Packaged DeepSpeed/accelerate configs: one source (configs/ links to the package), found from any directory,
written out for editing by ``translrec configs``."""

from __future__ import annotations

import json

import yaml

from tests.conftest import REPO, run_cli
from translrec_dist.training.builtin_configs import builtin_configs, builtin_dir
from translrec_dist.training.zero_config import launcher_deepspeed_file, read_deepspeed_json


def test_repository_configs_are_the_packaged_files():
    for kind in ("deepspeed", "accelerate"):
        assert (REPO / "configs" / kind).resolve() == builtin_dir(kind)  # a link: nothing to drift
    assert {"zero1.json", "zero2.json", "zero3.json", "zero2_offload.json", "zero3_offload.json"} <= set(
        builtin_configs("deepspeed"))
    assert {"cpu.yaml", "cpu_ddp.yaml", "multi_gpu_zero2.yaml", "multi_node_zero3.yaml"} <= set(
        builtin_configs("accelerate"))


def test_a_shipped_accelerate_yaml_finds_its_json_from_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    named = yaml.safe_load(builtin_configs("accelerate")["multi_gpu_zero2.yaml"].read_text())
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", named["deepspeed_config"]["deepspeed_config_file"])
    found = launcher_deepspeed_file()
    assert found == builtin_dir("deepspeed") / "zero2.json"
    assert read_deepspeed_json(found)["zero_optimization"]["stage"] == 2
    # any other missing path stays what the user wrote, so the error names it
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "my/zero2.json")
    assert str(launcher_deepspeed_file()) == "my/zero2.json"


def test_configs_command_writes_editable_copies_and_never_overwrites_without_force(tmp_path):
    out = tmp_path / "cfgs"
    run_cli(["configs", "--out", str(out)])
    for kind in ("deepspeed", "accelerate"):
        for name, packaged in builtin_configs(kind).items():
            assert (out / kind / name).is_file(), name
            if kind == "deepspeed":
                assert (out / kind / name).read_text() == packaged.read_text()
    zero3 = yaml.safe_load((out / "accelerate" / "multi_gpu_zero3.yaml").read_text())
    assert zero3["deepspeed_config"]["deepspeed_config_file"] == str(out / "deepspeed" / "zero3.json")

    edited = out / "deepspeed" / "zero2.json"
    edited.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    refused = run_cli(["configs", "--out", str(out)], check=False)
    assert refused.returncode == 2 and "already exist" in refused.stderr and "--force" in refused.stderr
    assert json.loads(edited.read_text()) == {"zero_optimization": {"stage": 2}}  # the user's edit survives
    run_cli(["configs", "--out", str(out), "--force"])
    assert edited.read_text() == builtin_configs("deepspeed")["zero2.json"].read_text()
