"""Small objects that run around the optimizer steps, each on its own schedule.

A hook has ``should_run(step) -> bool`` and ``run(trainer, step)``; ``observe(trainer, outcome)`` sees every
step's outcome (cheap, no host sync). Every rank runs the same hooks at the same steps, so a hook may run
collectives. Tasks add their own (``Task.hooks``) without the trainer knowing them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from translrec_dist import safe_io
from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import RunDir
from translrec_dist.training.checkpoint import save_state_atomically
from translrec_dist.training.memory import write_memory_report

log = logging.getLogger(__name__)


class Hook:
    def should_run(self, step: int) -> bool:
        return True

    def observe(self, trainer, outcome) -> None:
        return None

    def run(self, trainer, step: int) -> None:
        return None


def write_metrics(accelerator, path: Path, record: dict) -> None:
    if accelerator.is_main_process:
        with safe_io.open_append(path, path.parent) as f:
            f.write(json.dumps(record) + "\n")
    accelerator.log({k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))},
                    step=record["step"])


class LogHook(Hook):
    """Loss, learning rate and throughput every ``train.log_every`` steps (and at the last step).

    Accumulates on the device; syncs with the host only when a line is written.
    """

    def __init__(self, trainer):
        self.every, self.total, self.accelerator = trainer.cfg.train.log_every, trainer.total_steps, trainer.accelerator
        self.accum = trainer.cfg.train.grad_accum
        self.reset()

    def reset(self) -> None:
        dev = self.accelerator.device
        self.loss = torch.zeros((), device=dev)
        self.tokens = torch.zeros((), device=dev, dtype=torch.long)
        self.samples, self.micro_steps, self.start = 0, 0, time.perf_counter()

    def observe(self, trainer, outcome) -> None:
        for loss in outcome.micro_losses:
            self.loss += loss
        self.tokens += outcome.tokens
        self.samples += outcome.samples
        self.micro_steps += len(outcome.micro_losses)

    def should_run(self, step: int) -> bool:
        return step % self.every == 0 or step == self.total

    def state(self) -> dict:
        """The partly filled window, for a checkpoint (a collective): a run resumed from it logs the same mean
        loss over the same steps as a run that never stopped, whatever the stop step and world size. Kept per
        optimizer step (each is the mean of one global batch), not per micro-batch: the number of micro-batches
        of a step on one rank changes with the world size."""
        acc = self.accelerator
        loss = acc.reduce(self.loss.clone(), reduction="sum") if acc.num_processes > 1 else self.loss
        return {"loss_mean": loss.item() / acc.num_processes / max(self.micro_steps, 1),
                "steps": self.micro_steps // self.accum}

    def load_state(self, state: dict | None) -> None:
        # every rank counts the saved steps as its own micro-batches of the old mean: the reduction in run()
        # then weighs each optimizer step of the window alike, the saved ones and this run's
        if state and "steps" in state:  # checkpoints of older versions have no meter: a shorter first window
            self.micro_steps = int(state["steps"]) * self.accum
            self.loss += state["loss_mean"] * self.micro_steps

    def run(self, trainer, step: int) -> None:
        acc = self.accelerator
        stats = torch.stack([self.loss / max(self.micro_steps, 1), self.tokens.float(),
                             torch.tensor(float(self.samples), device=acc.device)])
        stats = acc.reduce(stats, reduction="sum") if acc.num_processes > 1 else stats
        loss, tokens, samples = stats.tolist()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        record = {"step": step, "epoch": round(step / trainer.steps_per_epoch, 4), "loss": loss / acc.num_processes,
                  "lr": trainer.scheduler.get_last_lr()[0], "samples_per_s": samples / elapsed,
                  "tokens_per_s": tokens / elapsed, "seconds": round(elapsed, 3)}
        self.reset()
        trainer.bar.set_postfix(loss=f"{record['loss']:.4f}")
        write_metrics(acc, trainer.run.metrics, record)


class MemoryHook(Hook):
    """Per-rank memory once, after this run's first optimizer step (optimizer state exists then)."""

    def __init__(self):
        self.done = False

    def should_run(self, step: int) -> bool:
        return not self.done

    def run(self, trainer, step: int) -> None:
        self.done = True  # a collective: every rank writes its figures
        write_memory_report(trainer.accelerator, trainer.model, trainer.optimizer, trainer.stage, trainer.run.memory)


class CheckpointHook(Hook):
    """A checkpoint every ``train.checkpoint_every`` steps, never right after a skipped (non-finite) step."""

    def __init__(self, trainer):
        self.every, self.total, self.guard = trainer.cfg.train.checkpoint_every, trainer.total_steps, trainer.guard

    def should_run(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0 and self.guard.streak == 0 and step < self.total

    def run(self, trainer, step: int) -> None:
        trainer.save_checkpoint()


class ValidationHook(Hook):
    """Validation every ``eval.every_steps``, printed on the console and written to ``metrics.jsonl``; with
    ``eval.best_metric`` the best state is kept aside in ``checkpoints/best`` (better = ``eval.best_is_higher``:
    eval.greater_is_better, else derived from the name) and restored at the end if the last is worse. With
    ``eval.patience`` the run ends early (``trainer.early_stop``) after that many evaluations in a row without a
    better value (HF's EarlyStoppingCallback, RecBole's stopping_step); it then finishes as a full run does."""

    def __init__(self, trainer):
        cfg = trainer.cfg
        self.cfg, self.every, self.total = cfg, cfg.eval.every_steps, trainer.total_steps
        self.metric = cfg.eval.best_metric
        self.higher = cfg.eval.best_is_higher
        self.patience = cfg.eval.patience
        state = RunDir.state_file(trainer.run.best)
        self.best = json.loads(state.read_text()) if self.metric and state.is_file() else None
        self.samples, self.since = 0, time.perf_counter()  # training pace between validations, for the console

    def observe(self, trainer, outcome) -> None:
        self.samples += outcome.samples

    def should_run(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0 and step < self.total

    def run(self, trainer, step: int) -> None:
        start = time.perf_counter()
        pace = self.samples * trainer.accelerator.num_processes / max(start - self.since, 1e-9)
        valid = trainer.data.evaluate(trainer.model, "valid", trainer.accelerator)
        seconds = time.perf_counter() - start
        write_metrics(trainer.accelerator, trainer.run.metrics, {"step": step, **{f"valid/{k}": v
                                                                                  for k, v in valid.items()}})
        if self.metric:
            value = self.value(valid)
            if self.best is None or self.better(value, self.best["value"]):
                self.best = {"step": step, "value": value, "metric": self.metric}
                save_state_atomically(trainer.accelerator, trainer.run.best, self.best)
        self.report(trainer, step, valid, seconds, pace)
        self.samples, self.since = 0, time.perf_counter()
        if self.patience and self.best is not None:
            # evaluations since the best one: derived from the steps, so a resumed run counts the same
            without = (step - self.best["step"]) // self.every
            if without >= self.patience:
                trainer.early_stop = {"step": step, "metric": self.metric, "best_step": self.best["step"],
                                      "best": self.best["value"], "evaluations_without_improvement": without,
                                      "patience": self.patience}
                write_metrics(trainer.accelerator, trainer.run.metrics, {"step": step, "early_stop": 1})
                log.info("early stopping at step %d: %s has not improved on %s (step %d) for %d evaluations "
                         "(eval.patience=%d); finishing with the best checkpoint", step, self.metric,
                         _number(self.best["value"]), self.best["step"], without, self.patience)

    def report(self, trainer, step: int, valid: dict, seconds: float, pace: float) -> None:
        shown = ", ".join(f"{k}={_number(v)}" for k, v in valid.items() if not k.startswith("num_"))
        best = (f"; best {self.metric}={_number(self.best['value'])} at step {self.best['step']}"
                if self.best is not None else "")
        trainer.bar.clear()  # the line lands above the progress bar instead of inside it
        log.info("step %d/%d valid: %s%s (%.1f s); training %.1f samples/s", step, self.total, shown, best, seconds,
                 pace)
        trainer.bar.refresh()

    def value(self, metrics: dict) -> float | None:
        """The best metric's value; None when it could not be computed (e.g. AUC of a one-class split)."""
        if self.metric not in metrics:
            raise ConfigError(f"eval.best_metric={self.metric} is not a validation metric of task={self.cfg.task}; "
                              f"choose one of {', '.join(k for k in metrics if k != 'step')} ({self.cfg.source})")
        value = metrics[self.metric]
        return None if value is None else float(value)

    def better(self, value: float | None, than: float | None) -> bool:
        """A value that could not be computed is never better, and anything beats one."""
        if value is None or than is None:
            return value is not None
        return value > than if self.higher else value < than

    def restore_if_better(self, trainer) -> int:
        """Go back to the best validated state when the last step validates worse; returns the step evaluated."""
        step = trainer.step
        if self.best is None or self.best["step"] == step:
            return step
        last = self.value(trainer.data.evaluate(trainer.model, "valid", trainer.accelerator))
        if not self.better(self.best["value"], last):
            log.info("last step validates best (%s=%s)", self.metric, last)
            return step
        log.info("restoring step %d (%s=%s, better than %s at the last step)", self.best["step"], self.metric,
                 self.best["value"], last)
        trainer.accelerator.load_state(str(trainer.run.best))
        return self.best["step"]


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def final_evaluation(trainer, step: int) -> dict:
    """Every split of ``eval.splits``; ``eval.json`` has test at the top level and the others nested."""
    results: dict = {}
    for split in trainer.cfg.eval.splits:
        metrics = {**trainer.data.evaluate(trainer.model, split, trainer.accelerator), "step": step}
        if split == "test":
            results.update(metrics)
        else:
            results[split] = metrics
    if trainer.accelerator.is_main_process:
        # strict JSON: null, never NaN
        safe_io.write_json(trainer.run.eval, results, trainer.run.root, indent=2, allow_nan=False)
        log.info("eval: %s", json.dumps(results))
    write_metrics(trainer.accelerator, trainer.run.metrics,
                  {"step": step, **{f"eval/{k}": v for k, v in results.items() if not isinstance(v, dict)}})
    return results


def flat_config(cfg) -> dict:
    """``train.lr``-style keys for the trackers."""
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)

    walk(cfg.to_dict())
    return flat

