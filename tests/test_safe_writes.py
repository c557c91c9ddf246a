"""Every writer of the package into a run or export directory refuses a planted link (exit 2) and leaves the file
it points to untouched; readers of someone else's files refuse devices instead of hanging."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import FAST, TINY
from tests.tiny_exports import WORDS, write_export
from translrec_dist import safe_io
from translrec_dist.config.loader import load_config
from translrec_dist.errors import UserError
from translrec_dist.run_dir import RunDir


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("precious")
    yield path
    assert path.read_text() == "precious"  # never written through


def test_write_tree_moves_into_a_new_or_existing_folder_and_refuses_links(tmp_path, victim):
    def fill(stage):
        (stage / "sub").mkdir()
        (stage / "a.txt").write_text("a")
        (stage / "sub" / "b.txt").write_text("b")

    root = tmp_path / "run"
    safe_io.write_tree(root / "new", root, fill)
    assert (root / "new" / "sub" / "b.txt").read_text() == "b"
    safe_io.write_tree(root / "new", root, fill)  # again, into the existing folder
    assert sorted(p.name for p in (root / "new").iterdir()) == ["a.txt", "sub"]  # no stage left behind
    (root / "new" / "a.txt").unlink()
    (root / "new" / "a.txt").symlink_to(victim)
    with pytest.raises(safe_io.UnsafePathError, match="symbolic link"):
        safe_io.write_tree(root / "new", root, fill)
    (root / "linked").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(safe_io.UnsafePathError, match="symbolic link"):
        safe_io.write_tree(root / "linked", root, fill)
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_an_export_into_a_folder_with_a_planted_link_is_refused(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tokenizer_config.json").symlink_to(victim)
    with pytest.raises(UserError, match="tokenizer_config.json is a symbolic link"):
        write_export(out)


def test_the_run_config_and_tokenizer_are_never_written_through_a_link(tmp_path, victim):
    from translrec_dist.config.loader import dump_config
    from translrec_dist.data.tokenize import save_tokenizer, train_wordpiece

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.config.symlink_to(victim)
    cfg = load_config(TINY, [*FAST, f"output_dir={run.root}"])
    with pytest.raises(UserError, match="config.yaml is a symbolic link"):
        dump_config(cfg, run.config, run.root)
    run.tokenizer.mkdir()
    (run.tokenizer / "tokenizer.json").symlink_to(victim)
    with pytest.raises(UserError, match="tokenizer.json is a symbolic link"):
        save_tokenizer(train_wordpiece(WORDS, 100, 32), run.tokenizer, run.root)


def test_checkpoint_files_are_never_written_through_a_link(tmp_path, victim):
    from translrec_dist.training.checkpoint import write_file_manifest

    step = RunDir(tmp_path / "run").checkpoint(3)
    step.mkdir(parents=True)
    (step / "weights.bin").write_bytes(b"w")
    (step / "checkpoint_files.json").symlink_to(victim)
    with pytest.raises(UserError, match="checkpoint_files.json is a symbolic link"):
        write_file_manifest(step)


def test_a_source_file_linked_to_a_device_is_refused_at_once(tmp_path):
    from translrec_dist.data.prepare import fingerprint

    os.symlink("/dev/zero", tmp_path / "interactions.csv")
    start = time.monotonic()
    with pytest.raises(UserError, match="not a regular file"):
        fingerprint(tmp_path / "interactions.csv", {})
    assert time.monotonic() - start < 5


def test_logs_that_grow_line_by_line_never_append_through_a_link(tmp_path, victim):
    from types import SimpleNamespace

    from translrec_dist.training.hooks import write_metrics

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    main = SimpleNamespace(is_main_process=True, log=lambda values, step: None)
    write_metrics(main, run.metrics, {"step": 1})
    write_metrics(main, run.metrics, {"step": 2})
    assert run.metrics.read_text().splitlines() == ['{"step": 1}', '{"step": 2}']
    run.metrics.unlink()
    run.metrics.symlink_to(victim)
    with pytest.raises(UserError, match="metrics.jsonl is a symbolic link"):
        write_metrics(main, run.metrics, {"step": 3})
