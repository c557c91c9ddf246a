import json

import pytest

from translrec_dist.errors import DataError
from translrec_dist.evaluation.report import make_report
from translrec_dist.run_dir import RunDir


def test_report_plots_curves_and_summarizes(tmp_path):
    lines = [{"step": s, "epoch": s / 10, "loss": 1.0 / s, "lr": 1e-3, "samples_per_s": 100.0 + s,
              "tokens_per_s": 5000.0} for s in range(1, 21)]
    lines.append({"step": 20, "valid/auc": 0.8, "valid/num_examples": 10})
    RunDir(tmp_path).metrics.write_text("\n".join(json.dumps(r) for r in lines))
    RunDir(tmp_path).eval.write_text(json.dumps({"auc": 0.81, "step": 20}))
    written, summary = make_report(tmp_path)
    names = {p.name for p in written}
    assert names == {"training.png", "eval.png", "summary.txt"}
    assert all(p.stat().st_size > 1000 for p in written if p.suffix == ".png")
    assert "steps logged: 1..20" in summary and "best 0.0500" in summary and "auc=0.8100" in summary
    assert "median 110.5 samples/s" in summary


def test_report_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="metrics.jsonl not found"):
        make_report(tmp_path)
    RunDir(tmp_path).metrics.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(DataError, match="line 2: not JSON"):
        make_report(tmp_path)
