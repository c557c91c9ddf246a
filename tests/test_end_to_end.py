"""Train the tiny config, export, reload with plain transformers, resume exactly, and use the CLI."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from tests.conftest import FAST, TINY, run_cli
from tests.run_files import metric_rows, train
from translrec_dist.config.loader import load_config
from translrec_dist.data.stages import load_text_splits
from translrec_dist.evaluation.metrics import binary_metrics
from translrec_dist.run_dir import RunDir

pytestmark = pytest.mark.slow  # every test trains or runs the CLI in subprocesses

read_metrics = metric_rows

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    train(out, "train.epochs=2")
    return out


def test_run_writes_metrics_eval_and_final(trained):
    logs = [r for r in read_metrics(trained) if "loss" in r]
    assert logs and {"step", "epoch", "loss", "lr", "samples_per_s", "tokens_per_s"} <= set(logs[0])
    assert all(np.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in logs)
    ev = json.loads(RunDir(trained).eval.read_text())
    assert {"auc", "logloss", "accuracy", "step", "num_examples"} <= set(ev) and ev["step"] == logs[-1]["step"]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "head.safetensors", "translrec.yaml"):
        assert (trained / "final" / f).is_file(), f
    assert (trained / "checkpoints").is_dir() and not list((trained / "checkpoints").glob("*.tmp"))


def test_export_reloads_with_plain_transformers_and_scores_the_same(trained):
    final = trained / "final"
    encoder = AutoModel.from_pretrained(final).eval()
    tokenizer = AutoTokenizer.from_pretrained(final)
    head = load_file(str(final / "head.safetensors"))
    cfg = load_config(final / "translrec.yaml")
    test = load_text_splits(cfg).frames["test"]
    scores = []
    with torch.no_grad():
        for start in range(0, len(test), 64):
            part = test.iloc[start:start + 64]
            enc = tokenizer(part.text.tolist(), part.text_pair.tolist(), truncation=True,
                            max_length=cfg.data.max_length, padding=True, return_tensors="pt")
            cls = encoder(**enc).last_hidden_state[:, 0]
            scores.append(cls @ head["weight"].T + head["bias"])
    ours = binary_metrics(torch.cat(scores).squeeze(-1).numpy(), test.label.to_numpy())
    ev = json.loads(RunDir(trained).eval.read_text())
    assert ours["auc"] == pytest.approx(ev["auc"], abs=1e-6)
    assert ours["logloss"] == pytest.approx(ev["logloss"], abs=1e-5)


def test_evaluate_and_predict_commands(trained, tmp_path):
    ev = json.loads(run_cli(["evaluate", str(TINY), *FAST, f"output_dir={trained}"]).stdout)
    assert ev["auc"] == pytest.approx(json.loads(RunDir(trained).eval.read_text())["auc"], abs=1e-6)
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"user_id": ["0", "1"], "item_id": ["3", "4"]}).to_csv(rows, index=False)
    out = run_cli(["predict", "--model", str(trained / "final"), "--input", str(rows)]).stdout.splitlines()
    preds = [json.loads(line) for line in out]
    assert [p["user_id"] for p in preds] == ["0", "1"] and all(0 < p["probability"] < 1 for p in preds)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    # Stop at step 5, which log_every=3 does not divide: the meter's window (steps 4-5) travels in the
    # checkpoint, so the resumed run logs step 6 over steps 4-6 like the uninterrupted one.
    common = ["train.max_steps=12", "train.log_every=3"]
    train(tmp_path / "full", *common)
    stopped = train(tmp_path / "part", *common, "train.stop_after_steps=5")
    assert json.loads(stopped.stdout.splitlines()[-1]) == {"stopped": True, "step": 5}
    assert not (tmp_path / "part" / "final").exists()
    resumed = train(tmp_path / "part", *common, "train.resume_from=auto")
    # It resumed (a fresh deterministic run would give the same weights): the log says so, and it trained 7 steps.
    assert re.search(r"resumed from \S*step_5 at step 5\b", resumed.stderr), resumed.stderr[-3000:]
    assert "7 optimizer steps in this run (6-12)" in resumed.stderr, resumed.stderr[-3000:]
    weights = sorted(p.name for p in (tmp_path / "full" / "final").glob("*.safetensors"))
    assert weights == sorted(p.name for p in (tmp_path / "part" / "final").glob("*.safetensors"))
    assert {"model.safetensors", "head.safetensors"} <= set(weights)
    for name in weights:
        full, part = (load_file(str(tmp_path / d / "final" / name)) for d in ("full", "part"))
        assert full.keys() == part.keys()
        for k in full:
            torch.testing.assert_close(part[k], full[k], rtol=0, atol=1e-6, msg=f"{name}: {k}")
    steps = [r["step"] for r in read_metrics(tmp_path / "part") if "loss" in r]
    assert steps == [3, 6, 9, 12]  # no duplicate or missing step; none logged at the stop
    loss = {d: {r["step"]: r["loss"] for r in read_metrics(tmp_path / d) if "loss" in r} for d in ("full", "part")}
    assert loss["part"] == pytest.approx(loss["full"], abs=1e-6)  # same curve, steps 1..12, no gap or repeat


def test_half_written_checkpoint_is_never_resumed(tmp_path):
    out = tmp_path / "run"
    train(out, "train.max_steps=4", "train.stop_after_steps=2")
    (out / "checkpoints" / "step_3.tmp").mkdir()  # a crash while saving step 3
    run = train(out, "train.max_steps=4", "train.resume_from=auto")
    assert "resumed from" in run.stderr and "step_2" in run.stderr


def test_output_dir_of_an_earlier_run_is_never_started_over_silently(tmp_path):
    out = tmp_path / "run"
    # An earlier run's leftovers without a complete checkpoint (it crashed while saving step 3), and a user file.
    (out / "checkpoints" / "step_3.tmp").mkdir(parents=True)
    (out / "final").mkdir()
    (out / "final" / "stale.txt").write_text("old export")
    (out / "example_ids").mkdir()
    (out / "example_ids" / "rank0.txt").write_text("1\n2\n")
    for path in (RunDir(out).eval, RunDir(out).memory):
        path.write_text('{"stale": true}')
    (out / "notes.txt").write_text("mine")
    (out / ".translrec-run").write_text("{}")  # a run's directory (unmarked ones: tests/training/test_output_dir.py)
    # resume_from=auto (what the SLURM scripts pass) finds nothing to resume: a fresh start without the stale
    # results, and the checkpoints directory is left alone.
    run = train(out, "train.max_steps=2", "train.resume_from=auto")
    assert not (out / "final" / "stale.txt").exists() and (out / "final" / "model.safetensors").is_file()
    assert "stale" not in json.loads(RunDir(out).eval.read_text())
    assert "stale" not in json.loads((out / "memory.json").read_text())
    assert not (out / "example_ids").exists()
    assert (out / "checkpoints" / "step_3.tmp").is_dir() and (out / "notes.txt").read_text() == "mine"
    assert "resumed from" not in run.stderr
    # Now it holds checkpoints: without resume_from the run stops before any work and names both ways on.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    refused = train(out, "train.max_steps=2", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "train.resume_from=auto" in refused.stderr and "train.overwrite=true" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    # overwrite=true starts over: every output of the earlier run goes, the user's file stays.
    train(out, "train.max_steps=2", "train.overwrite=true", "train.checkpoint_every=1")
    assert not (out / "checkpoints" / "step_3.tmp").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_1", "step_2"]
    assert (out / "notes.txt").read_text() == "mine"
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == [2]  # metrics.jsonl of this run only


def test_bad_config_exits_2_without_traceback(tmp_path):
    run = run_cli(["train", str(TINY), "train.lr=fast", f"output_dir={tmp_path}"], check=False)
    assert run.returncode == 2 and "train.lr" in run.stderr and "Traceback" not in run.stderr
    missing = run_cli(["train", str(TINY), "data.format=interactions", f"data.path={tmp_path}/none",
                       f"output_dir={tmp_path}"], check=False)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr


def test_tiny_config_clearly_beats_chance(tmp_path):
    """The README's main job, as shipped: AUC >= 0.75 on the test split, and stdout holds only the result JSON
    (``translrec train ... | jq``; DeepSpeed, imported by accelerate, once printed a warning there)."""
    proc = run_cli(["train", str(TINY), f"output_dir={tmp_path / 'tiny'}", "train.progress_bar=false"])
    ev = json.loads(RunDir(tmp_path / "tiny").eval.read_text())
    assert ev["auc"] >= 0.75, ev
    assert json.loads(proc.stdout)["auc"] == ev["auc"], proc.stdout[:500]
