"""A command that refuses its input creates nothing, and never writes through a link planted where it writes."""

from __future__ import annotations

import json

from translrec_dist.cli import main
from translrec_dist.run_dir import RunDir


def test_synth_into_a_file_exits_2_with_a_message(tmp_path, capsys):
    target = tmp_path / "data.csv"
    target.write_text("mine")
    assert main(["synth", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"--out {target} is a file; pass a folder" in err and "Traceback" not in err
    assert target.read_text() == "mine"


def test_synth_never_writes_through_a_link(tmp_path, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere.csv"
    out.mkdir()
    elsewhere.write_text("not yours")
    (out / "items.csv").symlink_to(elsewhere)
    assert main(["synth", "--out", str(out), "--users", "5", "--items", "5"]) == 2
    assert "is a symbolic link; refusing to write through it" in capsys.readouterr().err
    assert elsewhere.read_text() == "not yours"


def test_report_on_a_missing_run_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "MISSING"
    assert main(["report", str(missing)]) == 2
    assert "metrics.jsonl not found" in capsys.readouterr().err
    assert not missing.exists()


def test_report_never_writes_through_a_link_in_the_run(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.report.mkdir(parents=True)
    run.metrics.write_text(json.dumps({"step": 1, "loss": 1.0, "lr": 0.1, "samples_per_s": 1, "tokens_per_s": 1}))
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not yours")
    (run.report / "summary.txt").symlink_to(elsewhere)
    assert main(["report", str(run.root)]) == 2
    assert "summary.txt is a symbolic link" in capsys.readouterr().err
    assert elsewhere.read_text() == "not yours"
