"""Train the tiny config, export, reload with plain transformers, resume exactly, and use the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from tests.conftest import FAST, TINY, run_cli
from translrec_dist.config import load_config
from translrec_dist.data import load_text_splits
from translrec_dist.evaluation.metrics import binary_metrics


def train(out, *overrides, check=True):
    return run_cli(["train", str(TINY), *FAST, f"output_dir={out}", *overrides], check=check)


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    train(out, "train.epochs=2")
    return out


def test_run_writes_metrics_eval_and_final(trained):
    logs = [r for r in read_metrics(trained) if "loss" in r]
    assert logs and {"step", "epoch", "loss", "lr", "samples_per_s", "tokens_per_s"} <= set(logs[0])
    assert all(np.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in logs)
    ev = json.loads((trained / "eval.json").read_text())
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
    ev = json.loads((trained / "eval.json").read_text())
    assert ours["auc"] == pytest.approx(ev["auc"], abs=1e-6)
    assert ours["logloss"] == pytest.approx(ev["logloss"], abs=1e-5)


def test_evaluate_and_predict_commands(trained, tmp_path):
    ev = json.loads(run_cli(["evaluate", str(TINY), *FAST, f"output_dir={trained}"]).stdout)
    assert ev["auc"] == pytest.approx(json.loads((trained / "eval.json").read_text())["auc"], abs=1e-6)
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"user_id": ["0", "1"], "item_id": ["3", "4"]}).to_csv(rows, index=False)
    out = run_cli(["predict", "--model", str(trained / "final"), "--input", str(rows)]).stdout.splitlines()
    preds = [json.loads(line) for line in out]
    assert [p["user_id"] for p in preds] == ["0", "1"] and all(0 < p["probability"] < 1 for p in preds)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    common = ["train.max_steps=12", "train.log_every=1"]
    train(tmp_path / "full", *common)
    stopped = train(tmp_path / "part", *common, "train.stop_after_steps=5")
    assert json.loads(stopped.stdout.splitlines()[-1]) == {"stopped": True, "step": 5}
    assert not (tmp_path / "part" / "final").exists()
    train(tmp_path / "part", *common, "train.resume_from=auto")
    full, part = (load_file(str(tmp_path / d / "final" / "model.safetensors")) for d in ("full", "part"))
    assert full.keys() == part.keys()
    for k in full:
        torch.testing.assert_close(part[k], full[k], rtol=0, atol=1e-6, msg=k)
    loss = {d: {r["step"]: r["loss"] for r in read_metrics(tmp_path / d) if "loss" in r} for d in ("full", "part")}
    assert loss["part"] == pytest.approx(loss["full"], abs=1e-6)  # same curve, steps 1..12, no gap or repeat


def test_half_written_checkpoint_is_never_resumed(tmp_path):
    out = tmp_path / "run"
    train(out, "train.max_steps=4", "train.stop_after_steps=2")
    (out / "checkpoints" / "step_3.tmp").mkdir()  # a crash while saving step 3
    run = train(out, "train.max_steps=4", "train.resume_from=auto")
    assert "resumed from" in run.stderr and "step_2" in run.stderr


def test_bad_config_exits_2_without_traceback(tmp_path):
    run = run_cli(["train", str(TINY), "train.lr=fast", f"output_dir={tmp_path}"], check=False)
    assert run.returncode == 2 and "train.lr" in run.stderr and "Traceback" not in run.stderr
    missing = run_cli(["train", str(TINY), "data.format=interactions", f"data.path={tmp_path}/none",
                       f"output_dir={tmp_path}"], check=False)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr


def test_tiny_config_clearly_beats_chance(tmp_path):
    """The README's main job, as shipped: AUC >= 0.75 on the test split."""
    run_cli(["train", str(TINY), f"output_dir={tmp_path / 'tiny'}", "train.progress_bar=false"])
    ev = json.loads((tmp_path / "tiny" / "eval.json").read_text())
    assert ev["auc"] >= 0.75, ev
