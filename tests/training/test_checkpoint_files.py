"""Checkpoint file checks without training: what resolve_resume accepts, skips and refuses."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from tests.conftest import run_cli
from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import FILES_MANIFEST, STATE_FILE, RunDir
from translrec_dist.training.checkpoint import checkpoint_problem, resolve_resume, write_file_manifest


def fake_checkpoint(out, step: int, manifest: bool = True):
    path = RunDir(out).checkpoint(step)
    (path / "pytorch_model").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (path / "pytorch_model" / "rank_1_states.pt").write_bytes(b"shard of rank 1" * 100)
    if manifest:
        write_file_manifest(path)
    (path / STATE_FILE).write_text(json.dumps({"step": step}))
    return path


def test_intact_checkpoints_pass_and_auto_takes_the_newest(tmp_path):
    for step in (2, 4):
        fake_checkpoint(tmp_path, step)
    assert checkpoint_problem(RunDir(tmp_path).checkpoint(4)) is None
    listed = json.loads((RunDir(tmp_path).checkpoint(4) / FILES_MANIFEST).read_text())["files"]
    assert set(listed) == {"model.safetensors", "pytorch_model/rank_1_states.pt"}
    assert resolve_resume("auto", RunDir(tmp_path)) == RunDir(tmp_path).checkpoint(4)


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.joinpath("model.safetensors").write_bytes(p.joinpath("model.safetensors").read_bytes()[:999]),
     "model.safetensors has 999 bytes, 10240 were written"),
    (lambda p: p.joinpath("pytorch_model", "rank_1_states.pt").write_bytes(b"X" * 1500),
     "pytorch_model/rank_1_states.pt does not match the SHA-256"),
    (lambda p: p.joinpath("pytorch_model", "rank_1_states.pt").unlink(), "pytorch_model/rank_1_states.pt is missing"),
    (lambda p: p.joinpath(STATE_FILE).write_text('{"st'), f"{STATE_FILE} is unreadable"),
])
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning_naming_it(tmp_path, caplog, damage, expected):
    fake_checkpoint(tmp_path, 2)
    newest = fake_checkpoint(tmp_path, 4)
    damage(newest)
    with caplog.at_level(logging.WARNING):
        assert resolve_resume("auto", RunDir(tmp_path)) == RunDir(tmp_path).checkpoint(2)
    assert f"skipping checkpoint {newest}: {expected}" in caplog.text
    with pytest.raises(ConfigError, match=f"train.resume_from={newest} is damaged: {expected}"):
        resolve_resume(str(newest), RunDir(tmp_path))


def test_no_intact_checkpoint_stops_instead_of_starting_over(tmp_path):
    only = fake_checkpoint(tmp_path, 2)
    (only / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="no intact checkpoint .*step_2 \\(model.safetensors has 0 bytes"):
        resolve_resume("auto", RunDir(tmp_path))


def test_checkpoints_from_before_the_file_list_are_used_unchecked(tmp_path):
    old = fake_checkpoint(tmp_path, 2, manifest=False)
    assert resolve_resume("auto", RunDir(tmp_path)) == old


@pytest.mark.slow  # two processes
def test_rank_0_decides_and_every_rank_gets_its_answer_or_its_error(tmp_path):
    good, broken = tmp_path / "good", tmp_path / "broken"
    fake_checkpoint(good, 2)
    (fake_checkpoint(good, 4) / "model.safetensors").write_bytes(b"cut")
    (fake_checkpoint(broken, 2) / "model.safetensors").write_bytes(b"cut")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29661"]
    run_cli([str(good), str(broken), str(tmp_path / "rank")], launcher=launcher, module="tests.training.decide_worker")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1], results
    assert results[1]["good"] == str(RunDir(good).checkpoint(2))
    assert "no intact checkpoint" in results[1]["broken"] and str(RunDir(broken).checkpoints) in results[1]["broken"]
