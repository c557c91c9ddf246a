"""safe_io: writes never follow a link or leave their root; reads refuse devices and FIFOs."""

import os

import pytest

from translrec_dist import safe_io
from translrec_dist.safe_io import UnsafePathError


def test_write_is_atomic_and_replaces(tmp_path):
    target = tmp_path / "a" / "b.json"
    safe_io.write_json(target, {"x": 1}, tmp_path)
    safe_io.write_text(target, "new", tmp_path)
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]  # no temporary file left behind


def test_refuses_a_linked_file(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    root = tmp_path / "export"
    root.mkdir()
    (root / "items.json").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_io.write_text(root / "items.json", "overwritten", root)
    assert victim.read_text() == "precious"


def test_refuses_a_linked_folder_on_the_way(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "run"
    root.mkdir()
    (root / "index").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        safe_io.write_text(root / "index" / "items.json", "x", root)
    assert list(elsewhere.iterdir()) == []


def test_refuses_paths_outside_the_root(tmp_path):
    with pytest.raises(UnsafePathError, match="not inside"):
        safe_io.write_text(tmp_path / "run" / ".." / "out.txt", "x", tmp_path / "run")


def test_root_itself_may_be_a_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "runs").symlink_to(real, target_is_directory=True)
    safe_io.write_text(tmp_path / "runs" / "f.txt", "ok", tmp_path / "runs")
    assert (real / "f.txt").read_text() == "ok"


def test_check_regular_refuses_fifo_and_devices(tmp_path):
    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        safe_io.check_regular(fifo)
    link = tmp_path / "zero.bin"
    link.symlink_to("/dev/zero")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        safe_io.check_regular(link)
    with pytest.raises(UnsafePathError, match="does not exist"):
        safe_io.check_regular(tmp_path / "missing")
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert safe_io.check_regular(plain) == plain
