"""Preflight: the checks that look outside the config (files, environment, world size) stop a run before any
process group starts, with the key, the file and the fix."""

from __future__ import annotations

import pytest

from tests.conftest import TINY
from translrec_dist.cli import main
from translrec_dist.errors import ConfigError
from translrec_dist.training.preflight import preflight


@pytest.mark.parametrize("overrides, where, fragments", [
    (["output_dir={file}"], "file", ["output_dir", "is a file, not a directory"]),
    (["output_dir={file}/run"], "file", ["output_dir", "is a file, not a directory"]),
    (["train.resume_from={tmp}/missing"], "missing", ["train.resume_from", "is not a directory", "auto"]),
    (["train.global_batch_size=48"], "", ["train.global_batch_size=48", "world_size=2"]),
])
def test_preflight_refuses(tiny_cfg, tmp_path, overrides, where, fragments):
    (tmp_path / "file").write_text("not a directory")
    cfg = tiny_cfg(*[o.format(file=tmp_path / "file", tmp=tmp_path) for o in overrides])
    with pytest.raises(ConfigError) as e:
        preflight(cfg, 2)
    message = str(e.value)
    assert str(TINY) in message and where in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_preflight_accepts_a_fresh_run_and_an_existing_checkpoint_dir(tiny_cfg, tmp_path):
    preflight(tiny_cfg("train.global_batch_size=16", "train.resume_from=auto"), 2)  # 8 x 1 x 2
    preflight(tiny_cfg(f"train.resume_from={tmp_path}"), 1)


def test_train_into_a_file_exits_2_before_writing_anything(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("user data")
    assert main(["train", str(TINY), f"output_dir={target}"]) == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and str(target) in err and "Traceback" not in err, err
    assert target.read_text() == "user data" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
