"""The best validated state is chosen and restored in the direction of ``eval.best_is_higher`` (one source)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from tqdm import tqdm

from translrec_dist.run_dir import RunDir
from translrec_dist.training.hooks import ValidationHook


class FakeAccelerator:
    """Saves and loads a marker of the model's state instead of the model."""

    is_main_process, num_processes = True, 1

    def __init__(self):
        self.state, self.loaded = None, None

    def wait_for_everyone(self):
        pass

    def log(self, *args, **kwargs):
        pass

    def save_state(self, directory):
        Path(directory, "state.txt").write_text(str(self.state))

    def load_state(self, directory):
        self.loaded = Path(directory, "state.txt").read_text()


def validate_sequence(cfg, tmp_path, metric, values, last):
    acc, run = FakeAccelerator(), RunDir(tmp_path)
    feed = iter([*values, last])
    trainer = SimpleNamespace(cfg=cfg, total_steps=100, run=run, accelerator=acc, model=None, step=0,
                              data=SimpleNamespace(evaluate=lambda model, split, a: {metric: next(feed)}),
                              bar=tqdm(disable=True), early_stop=None)
    hook = ValidationHook(trainer)
    hook.trainer = trainer  # for the tests that read trainer.early_stop
    for step in range(1, len(values) + 1):
        trainer.step = acc.state = step
        hook.run(trainer, step)
        if trainer.early_stop:  # the trainer's loop ends here; `last` is how its state validates again
            feed = iter([last])
            break
    trainer.step = 100
    restored = hook.restore_if_better(trainer)
    return hook, restored, acc.loaded


@pytest.mark.parametrize(("overrides", "metric", "best_step"), [
    (["task=rating", "eval.best_metric=rmse"], "rmse", 2),  # lower is better: 0.5 at step 2
    (["eval.best_metric=logloss"], "logloss", 2),
    (["eval.best_metric=auc"], "auc", 1),  # higher is better: 0.9 at step 1
    (["eval.best_metric=auc", "eval.greater_is_better=false"], "auc", 2),  # the override wins over the name
])
def test_best_state_follows_the_metric_direction(tiny_cfg, tmp_path, overrides, metric, best_step):
    cfg = tiny_cfg(*overrides)
    values = [0.9, 0.5, 0.7]
    hook, restored, loaded = validate_sequence(cfg, tmp_path, metric, values, last=0.8)
    assert hook.best == {"step": best_step, "value": values[best_step - 1], "metric": metric}
    assert json.loads(RunDir.state_file(RunDir(tmp_path).best).read_text())["step"] == best_step
    # the last step (0.8) validates worse than the best in either direction: the best state is loaded back
    assert restored == best_step and loaded == str(best_step)


def test_last_state_is_kept_when_it_validates_best(tiny_cfg, tmp_path):
    _, restored, loaded = validate_sequence(tiny_cfg("task=rating", "eval.best_metric=rmse"), tmp_path, "rmse",
                                            [0.9, 0.5, 0.7], last=0.4)
    assert restored == 100 and loaded is None


def test_a_metric_that_could_not_be_computed_never_wins_and_does_not_crash(tiny_cfg, tmp_path):
    """AUC of a one-class validation split is None (JSON null): it must neither crash selection nor be kept."""
    cfg = tiny_cfg("eval.best_metric=auc")
    hook, restored, loaded = validate_sequence(cfg, tmp_path, "auc", [None, 0.6, None], last=None)
    assert hook.best == {"step": 2, "value": 0.6, "metric": "auc"}
    assert restored == 2 and loaded == "2"  # the last step could not be judged: the best known state is kept


@pytest.mark.parametrize(("overrides", "values", "stop_step", "best_step"), [
    (["eval.best_metric=auc"], [0.6, 0.7, 0.7, 0.65, 0.9], 4, 2),  # 0.7 again is no improvement
    (["task=rating", "eval.best_metric=rmse"], [0.9, 0.8, 0.85, 0.79, 0.8, 0.81], 6, 4),  # lower is better
    (["eval.best_metric=auc", "eval.greater_is_better=false"], [0.6, 0.7, 0.8], 3, 1),  # the direction wins
])
def test_patience_stops_after_evaluations_without_improvement(tiny_cfg, tmp_path, overrides, values, stop_step,
                                                              best_step):
    cfg = tiny_cfg(*overrides, "eval.every_steps=1", "eval.patience=2")
    hook, restored, loaded = validate_sequence(cfg, tmp_path, cfg.eval.best_metric, values,
                                               last=values[stop_step - 1])
    early = hook_trainer_stop(hook, tmp_path)
    assert early["step"] == stop_step and early["best_step"] == best_step
    assert early["evaluations_without_improvement"] == 2 and early["patience"] == 2
    assert restored == best_step and loaded == str(best_step)  # finishes with the best state


def hook_trainer_stop(hook, tmp_path) -> dict:
    records = [json.loads(line) for line in (RunDir(tmp_path).metrics).read_text().splitlines()]
    stops = [r for r in records if "early_stop" in r]
    assert len(stops) == 1  # written once, at the step it stopped
    assert hook.trainer.early_stop["step"] == stops[0]["step"]
    return hook.trainer.early_stop


def test_no_patience_never_stops(tiny_cfg, tmp_path):
    cfg = tiny_cfg("eval.best_metric=auc", "eval.every_steps=1")
    hook, _, _ = validate_sequence(cfg, tmp_path, "auc", [0.9, 0.5, 0.5, 0.5, 0.5], last=0.5)
    assert not any("early_stop" in line for line in RunDir(tmp_path).metrics.read_text().splitlines())
