"""What a fresh start may remove from an output dir: only the paths RunDir names, never through a link."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import RunDir
from translrec_dist.training.output_dir import clear_for_fresh_start, refuse_to_start_over


def earlier_run(root) -> RunDir:
    run = RunDir(root)
    for d in (run.checkpoint(4), run.final, run.example_ids, run.tokenizer, run.tokenized("train"),
              run.item_vectors, run.prepared / "abc", run.report):
        d.mkdir(parents=True)
        (d / "f").write_text("x")
    for f in (run.config, run.metrics, run.eval, run.memory, run.stop):
        f.write_text("{}")
    (root / "notes.txt").write_text("mine")
    (root / "my_data").mkdir()
    return run


def cfg(**kw):
    return SimpleNamespace(**{"resume_from": None, "overwrite": False, **kw})


def test_overwrite_removes_every_output_and_nothing_else(tmp_path):
    run = earlier_run(tmp_path / "run")
    removed = clear_for_fresh_start(cfg(overwrite=True), run)
    assert {p.name for p in removed} >= {"checkpoints", "final", "eval.json", "memory.json", "metrics.jsonl",
                                         "example_ids", "tokenized", "tokenizer", "item_vectors", "prepared"}
    assert sorted(p.name for p in run.root.iterdir()) == ["my_data", "notes.txt"]


def test_a_start_that_keeps_checkpoints_removes_only_the_stale_results(tmp_path):
    run = earlier_run(tmp_path / "run")
    clear_for_fresh_start(cfg(resume_from="auto"), run)
    assert not any(p.exists() for p in (run.final, run.eval, run.memory, run.metrics, run.example_ids, run.stop))
    assert (run.checkpoint(4) / "f").is_file() and (run.tokenizer / "f").is_file()  # caches are rebuilt, not stale
    assert (run.root / "notes.txt").is_file()


def test_a_link_is_removed_never_what_it_points_to(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.final.symlink_to(elsewhere, target_is_directory=True)
    clear_for_fresh_start(cfg(overwrite=True), run)
    assert not run.final.exists() and (elsewhere / "keep.txt").read_text() == "not ours"


def test_an_earlier_run_is_not_started_over_without_being_asked(tmp_path):
    run = earlier_run(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train\.resume_from=auto.*train\.overwrite=true"):
        refuse_to_start_over(cfg(), run)
    refuse_to_start_over(cfg(overwrite=True), run)
    refuse_to_start_over(cfg(resume_from="auto"), run)
    refuse_to_start_over(cfg(), RunDir(tmp_path / "new"))  # nothing there yet
