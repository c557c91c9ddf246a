"""Trackers: train.project is the project, and a resumed (requeued) run continues the same tracker run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FAST, TINY, run_cli
from translrec_dist.config.loader import load_config
from translrec_dist.run_dir import RunDir
from translrec_dist.training.tracking import init_tracking


def scalars(event_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = []
    for events in sorted(event_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            steps += [e.step for e in acc.Scalars(tag)]
    return steps


@pytest.mark.slow
def test_resumed_run_logs_to_the_same_tensorboard_run(tmp_path):
    out = tmp_path / "run"
    common = [str(TINY), *FAST, f"output_dir={out}", "train.max_steps=6", "train.report_to=[tensorboard]",
              "train.project=recs", "train.run_name=tiny-a"]
    run_cli(["train", *common, "train.stop_after_steps=3"])
    first = json.loads(RunDir(out).tracker_run.read_text())
    assert first["project"] == "recs" and first["name"] == "tiny-a"
    proc = run_cli(["train", *common, "train.resume_from=auto"])
    assert "resumed from" in proc.stderr and f"continuing run {first['id']}" in proc.stderr
    assert json.loads(RunDir(out).tracker_run.read_text()) == first
    runs = list(RunDir(out).tensorboard.iterdir())
    assert [r.name for r in runs] == [first["id"]]  # one tracker run, not one per attempt
    assert sorted(scalars(runs[0], "loss")) == [2, 4, 6]  # steps of both attempts, none twice



class RecordingAccelerator:
    is_main_process = True

    def __init__(self):
        from accelerate.utils import ProjectConfiguration

        self.project_configuration = ProjectConfiguration()
        self.calls = []

    def init_trackers(self, project_name, config=None, init_kwargs=None):
        self.calls.append((project_name, init_kwargs))


def test_wandb_gets_the_project_and_resumes_the_kept_run_id(tmp_path):
    out = tmp_path / "job"
    out.mkdir()
    base = [*FAST, f"output_dir={out}", "train.report_to=[wandb]", "train.project=movies"]
    acc = RecordingAccelerator()
    run = init_tracking(acc, load_config(TINY, base), out, {})
    project, kwargs = acc.calls[0]
    assert project == "movies"  # not the output folder's name
    assert kwargs["wandb"] == {"name": "job", "id": run["id"], "resume": "allow", "dir": str(out)}
    resumed = init_tracking(acc, load_config(TINY, [*base, "train.resume_from=auto"]), out, {})
    assert acc.calls[1][1]["wandb"]["id"] == run["id"] == resumed["id"]
    fresh = init_tracking(acc, load_config(TINY, base), out, {})  # no resume: a new tracker run
    assert fresh["id"] != run["id"] and json.loads(RunDir(out).tracker_run.read_text())["id"] == fresh["id"]
    assert init_tracking(acc, load_config(TINY, [*FAST, f"output_dir={out}"]), out, {}) is None


def test_a_tracker_that_is_not_installed_stops_the_run_before_it_starts(tmp_path, monkeypatch):
    import accelerate.utils

    assert not accelerate.utils.is_wandb_available(), "the dev environment has no wandb (pyproject [dev])"
    out = tmp_path / "run"
    proc = run_cli(["train", str(TINY), *FAST, f"output_dir={out}", "train.report_to=[tensorboard,wandb]"],
                   check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "train.report_to: wandb requested but not installed" in proc.stderr and "pip install wandb" in proc.stderr
    assert not out.exists()  # nothing was started: no run directory, no tracker_run.json
    from translrec_dist.training.preflight import check_trackers

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: True)
    check_trackers(load_config(TINY, [*FAST, "train.report_to=[tensorboard,wandb]"]))  # installed: no error
