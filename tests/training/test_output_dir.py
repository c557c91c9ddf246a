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


# ----------------------------------------------------------------------------- whose directory it is

FOREIGN = {"config.yaml": b"my: config\n", "eval.json": b'{"mine": 1}', "report/paper.tex": b"\\section{x}",
           "final/thesis.pdf": b"%PDF-1.4 \x00\x01", "checkpoints/notes.txt": b"notes", "prepared/data.csv": b"a,b\n",
           "tokenizer/vocab.txt": b"[PAD]\n"}


def foreign_dir(root):
    for name, data in FOREIGN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return RunDir(root)


def assert_untouched(root) -> None:
    found = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert found == FOREIGN  # every user file byte for byte, and no marker or other file added


def test_a_directory_no_run_wrote_is_refused_naming_what_is_there(tmp_path):
    from translrec_dist.training.output_dir import claim

    run = foreign_dir(tmp_path / "mine")
    with pytest.raises(ConfigError) as e:
        claim(run)
    message = str(e.value)
    assert "no .translrec-run marker" in message and "deletes and overwrites nothing" in message
    assert "checkpoints/, config.yaml, eval.json, final/" in message
    assert_untouched(run.root)


@pytest.mark.parametrize("flag", ["train.resume_from=auto", "train.overwrite=true"])
@pytest.mark.slow
def test_train_under_either_flag_leaves_every_user_file_in_place(tmp_path, flag):
    from tests.conftest import FAST, TINY, run_cli

    run = foreign_dir(tmp_path / "mine")
    proc = run_cli(["train", str(TINY), *FAST, f"output_dir={run.root}", flag], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"output_dir={run.root} is not empty and no translrec run wrote it" in proc.stderr
    assert_untouched(run.root)


def test_claim_accepts_new_empty_and_marked_directories(tmp_path):
    from translrec_dist.training.output_dir import claim, mark

    assert claim(RunDir(tmp_path / "new" / "run")) == (True, tmp_path / "new")
    (tmp_path / "empty").mkdir()
    assert claim(RunDir(tmp_path / "empty")) == (True, None)
    run = foreign_dir(tmp_path / "marked")
    mark(run)
    assert claim(run) == (False, None)  # a marked run: its flags decide, and only layout names are removed
    clear_for_fresh_start(cfg(overwrite=True), run)
    assert sorted(p.name for p in run.root.iterdir()) == [".translrec-run"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        claim(RunDir(tmp_path / "file"))


def test_a_run_of_a_version_before_the_marker_is_adopted_only_when_it_is_one(tmp_path):
    from translrec_dist.training.output_dir import claim

    run = earlier_run(tmp_path / "old")  # also holds notes.txt and my_data/: not only the layout's names
    with pytest.raises(ConfigError, match="notes.txt"):
        claim(run)
    (run.root / "notes.txt").unlink()
    (run.root / "my_data").rmdir()
    with pytest.raises(ConfigError):  # step_4 has no trainer_state.json: no complete checkpoint
        claim(run)
    RunDir.state_file(run.checkpoint(4)).write_text("{}")
    (run.checkpoints / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError):  # checkpoints/ holds something that is not a checkpoint
        claim(run)
    (run.checkpoints / "notes.txt").unlink()
    assert claim(run) == (False, None)


@pytest.mark.slow
def test_a_run_refused_on_its_input_leaves_no_folder_and_no_file(tmp_path):
    from tests.conftest import FAST, TINY, run_cli

    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,item_id,rating,timestamp\n" +
                                           "".join(f"u{i},i{i % 3},x,{i}\n" for i in range(20)))
    (data / "items.csv").write_text("item_id,title\ni0,a\ni1,b\ni2,c\n")
    bad_input = [*FAST, "data.format=interactions", f"data.path={data}", "task=rating"]
    new, empty = tmp_path / "new" / "run", tmp_path / "empty"
    empty.mkdir()
    for out in (new, empty):
        proc = run_cli(["train", str(TINY), *bad_input, f"output_dir={out}"], check=False)
        assert proc.returncode == 2 and "bad_rating" in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "empty"]  # neither new/ nor new/run/
    assert list(empty.iterdir()) == []  # the folder the user made stays, empty


def test_prepare_claims_and_marks_the_run_dir_and_leaves_a_new_one_as_it_was_on_bad_input(tmp_path):
    from types import SimpleNamespace

    from translrec_dist.errors import DataError
    from translrec_dist.training.output_dir import prepare_in_run_dir

    def cfg_for(root):
        return SimpleNamespace(output_dir=str(root), data=SimpleNamespace(cache_dir=None))

    run = RunDir(tmp_path / "new")
    assert prepare_in_run_dir(cfg_for(run.root), lambda: "done") == "done"
    assert run.marker.is_file()  # the run that follows finds it marked, prepared/ and all

    def refused():
        run2.prepared.mkdir(parents=True)
        raise DataError("bad input")

    run2 = RunDir(tmp_path / "refused" / "run")
    with pytest.raises(DataError):
        prepare_in_run_dir(cfg_for(run2.root), refused)
    assert not (tmp_path / "refused").exists()
    mine = foreign_dir(tmp_path / "mine")
    with pytest.raises(ConfigError, match="no translrec run wrote it"):
        prepare_in_run_dir(cfg_for(mine.root), lambda: pytest.fail("must not run"))
    assert_untouched(mine.root)
