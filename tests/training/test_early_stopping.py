"""eval.patience end to end: the run stops early, says why on the console and in metrics.jsonl, finishes from the
best checkpoint (eval.json, final/), counts as finished for job scripts, and a resume does not train on.
Validation lines (metrics and throughput) appear on the console at each evaluation."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import FAST, TINY, run_cli
from translrec_dist.run_dir import RunDir


@pytest.mark.slow
def test_patience_stops_early_and_finishes_from_the_best_checkpoint(tmp_path):
    out = tmp_path / "run"
    # "lower AUC is better" on a model whose AUC rises as it trains: improvements stop at once
    args = ["train", str(TINY), *FAST, "train.max_steps=40", "eval.every_steps=4", "eval.best_metric=auc",
            "eval.greater_is_better=false", "eval.patience=2", "eval.splits=[valid,test]", f"output_dir={out}"]
    proc = run_cli(args)
    summary = json.loads(proc.stdout)  # stdout is the result JSON alone
    records = [json.loads(line) for line in RunDir(out).metrics.read_text().splitlines()]
    stop = [r["step"] for r in records if "early_stop" in r]
    assert len(stop) == 1 and stop[0] < 40
    step = stop[0]
    valid_steps = [r["step"] for r in records if "valid/auc" in r]
    assert valid_steps == list(range(4, step + 1, 4))  # no validation after the stop
    best = min((r["valid/auc"], r["step"]) for r in records if "valid/auc" in r)[1]
    assert step - best == 2 * 4  # two evaluations without improvement, then stop
    assert summary["step"] == best and summary["valid"]["step"] == best  # finished from the best checkpoint
    assert (out / "final" / "README.md").is_file()

    err = proc.stderr
    console = re.findall(r"step (\d+)/40 valid: .*auc=\S+.*samples/s", err)
    assert [int(s) for s in console] == valid_steps
    assert re.search(rf"early stopping at step {step}: auc has not improved .* \(step {best}\) for 2 evaluations", err)

    status = json.loads(run_cli(["run-status", str(out)]).stdout)
    assert status["finished"] and status["step"] == step
    again = run_cli(["train", str(TINY), *FAST, "train.max_steps=40", "eval.every_steps=4", "eval.best_metric=auc",
                     "eval.greater_is_better=false", "eval.patience=2", "eval.splits=[valid,test]",
                     f"output_dir={out}", "train.resume_from=auto"])
    assert "0 optimizer steps in this run" in again.stderr  # it ended early and finished: nothing to resume


def test_patience_needs_a_metric_and_a_schedule(tiny_cfg):
    from translrec_dist.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.patience"):
        tiny_cfg("eval.patience=2", "eval.every_steps=10")
    with pytest.raises(ConfigError, match="eval.patience"):
        tiny_cfg("eval.patience=2", "eval.best_metric=auc")
    assert tiny_cfg("eval.patience=2", "eval.best_metric=auc", "eval.every_steps=10").eval.patience == 2
