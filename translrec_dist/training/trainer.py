"""The trainer: one optimizer step (``train_step``) and the flat loop around it (``fit``). It knows no task.

``setup()`` builds the Accelerator, asks the task (``cfg.task`` in the registry) for its data and model,
prepares them and resumes; ``fit()`` feeds ``train_step`` the micro-batches of one optimizer step at a time
from an iterator that crosses epoch boundaries, and runs the hooks (logging, validation + best checkpoint,
checkpoints, memory report, the task's own) on their schedules. SIGTERM/SIGUSR1, a STOP file or
``train.stop_after_steps`` end the run with a checkpoint; ``RunResult`` says how it ended.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from translrec_dist.config.loader import dump_config
from translrec_dist.config.schema import RunConfig
from translrec_dist.console import close_log_files, log_to_file
from translrec_dist.data.loader import train_loader, train_steps_per_epoch
from translrec_dist.errors import UserError
from translrec_dist.models.export import write_export
from translrec_dist.models.source import model_source
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.base import DataContext, Task
from translrec_dist.threads import configure_threads
from translrec_dist.training.checkpoint import load_checkpoint, read_trainer_state, save_checkpoint
from translrec_dist.training.distributed import (
    agree,
    build_accelerator,
    end_run,
    size_zero_buckets,
    stop_requested_here,
    zero_stage,
)
from translrec_dist.training.hooks import (
    CheckpointHook,
    LogHook,
    MemoryHook,
    ValidationHook,
    final_evaluation,
    flat_config,
)
from translrec_dist.training.nonfinite import NonFiniteLossGuard
from translrec_dist.training.optim import build_optimizer, build_scheduler
from translrec_dist.training.output_dir import discard_fresh, open_run_dir, remove_layout_path
from translrec_dist.training.preemption import stop_signal, stop_signals_requested
from translrec_dist.training.resume import check_enough_data, check_resume_compatible, trainer_state
from translrec_dist.training.tracking import init_tracking
from translrec_dist.training.universal import repartitioned

log = logging.getLogger(__name__)


@dataclass
class StepOutcome:
    """One optimizer step: the micro-batch losses (detached, on the device), whether every rank's loss was
    finite (else the step was skipped everywhere), and whether some rank asked to stop."""

    micro_losses: list[torch.Tensor]
    finite: bool
    stop: bool
    tokens: torch.Tensor | int = 0
    samples: int = 0

    @property
    def loss(self) -> torch.Tensor:
        return torch.stack(self.micro_losses).mean()


@dataclass
class RunResult:
    step: int
    stopped: bool
    metrics: dict = field(default_factory=dict)  # final evaluation (eval.json); empty when stopped
    early_stop: dict | None = None  # eval.patience ended the run: where, and the best step it finished with

    def summary(self) -> dict:
        return {"stopped": True, "step": self.step} if self.stopped else self.metrics


class Trainer:
    def __init__(self, cfg: RunConfig, task: Task):
        """``task``: the run's task, found and checked where the program is assembled (``program.task_for``)."""
        self.cfg, self.task, self.run = cfg, task, RunDir(cfg.output_dir)
        self.step = self.steps_this_run = 0
        self.last_checkpoint: str | None = None
        self.bar = self.accelerator = self.opened = None
        self.early_stop: dict | None = None  # set by the validation hook (eval.patience): the loop ends there

    def setup(self) -> Trainer:
        cfg, t = self.cfg, self.cfg.train
        acc = self.accelerator = build_accelerator(cfg)
        self.world, self.stage = acc.num_processes, zero_stage(acc)
        if t.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        set_seed(cfg.seed, deterministic=t.deterministic)
        self.opened = open_run_dir(acc, t, self.run)  # the user's files and an earlier run are never cleared silently
        resume = self.opened.resume
        ctx = DataContext(self.run, acc.is_main_process, self.world, resume is not None, acc.wait_for_everyone,
                          shared_tokenizer=model_source(cfg)[0] == "tiny")
        data = self.data = self.task.build_data(cfg, ctx)
        spe = self.steps_per_epoch = train_steps_per_epoch(data.train, t.micro_batch_size, t.grad_accum, self.world)
        check_enough_data(cfg, len(data.train), self.world, spe)
        self.total_steps = t.max_steps or max(1, math.ceil(t.epochs * spe))
        repartition = resume is not None and check_resume_compatible(cfg, read_trainer_state(resume), self.world,
                                                                    resume, self.stage, spe)
        source = resume
        if repartition:  # a ZeRO checkpoint of another world size: load DeepSpeed's universal form of it
            resume = repartitioned(acc, source, read_trainer_state(source)["world_size"])
        self.start_run_dir()  # config and data are valid: the run's files begin here
        model = self.task.build_model(cfg, data.tokenizer, data)
        size_zero_buckets(acc, self.task.hidden_size(model))
        optimizer = build_optimizer(cfg, model)
        scheduler = build_scheduler(cfg, optimizer, self.total_steps)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        # DeepSpeed's engine set-up draws from the torch RNG (differently per stage): re-seed so dropout masks are
        # the same under every strategy and a ZeRO run reproduces the DDP loss curve.
        set_seed(cfg.seed, deterministic=t.deterministic)
        init_tracking(acc, cfg, self.run.root, flat_config(cfg))  # train.project/run_name; run id kept on resume
        saved = load_checkpoint(acc, resume) if resume is not None else {}
        self.guard = NonFiniteLossGuard(acc, t.max_bad_steps)
        self.validation, self.meter = ValidationHook(self), LogHook(self)
        self.hooks = [MemoryHook(), self.meter, self.validation, CheckpointHook(self), *self.task.hooks(cfg, data)]
        if resume is not None:
            self.step = saved["step"]
            # accelerate restores its micro-batch counter, which places the accumulation boundaries: written by
            # a run with another grad_accum (another world size), it would end the next step early
            acc.step = self.step * t.grad_accum
            self.meter.load_state(saved.get("meter"))
            self.early_stop = saved.get("early_stop")
            if self.early_stop:  # it ended early and finished: a resume does not train on
                self.total_steps = self.step
            self.last_checkpoint = str(source)
            log.info("resumed from %s at step %d", resume, self.step)
        return self

    def start_run_dir(self) -> None:
        log_to_file(self.run.log_file(self.accelerator.process_index), self.run.root)  # what the terminal leaves out
        if self.accelerator.is_main_process:
            self.run.stop.unlink(missing_ok=True)
            dump_config(self.cfg, self.run.config)
        self.accelerator.wait_for_everyone()

    def step_batches(self) -> Iterator[list[dict]]:
        """The micro-batches of each optimizer step from ``self.step`` on, across epoch boundaries."""
        t, spe = self.cfg.train, self.steps_per_epoch
        epoch, in_epoch = divmod(self.step, spe)
        while True:
            loader = iter(train_loader(self.data.train, self.data.collate, micro=t.micro_batch_size,
                                       accum=t.grad_accum, rank=self.accelerator.process_index, world=self.world,
                                       seed=self.cfg.seed, epoch=epoch, skip_batches=in_epoch * t.grad_accum,
                                       num_workers=self.cfg.data.num_workers, lengths=self.data.lengths))
            for _ in range(spe - in_epoch):
                yield list(itertools.islice(loader, t.grad_accum))
            epoch, in_epoch = epoch + 1, 0

    def train_step(self, micro_batches: list[dict]) -> StepOutcome:
        """Forward and backward over the micro-batches, then (on every rank or none) the optimizer step."""
        acc, model, t = self.accelerator, self.model, self.cfg.train
        losses, tokens, samples, finite, stop = [], 0, 0, True, False
        for batch in micro_batches:
            batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
            with acc.accumulate(model):
                with acc.autocast():
                    loss = self.task.loss(model, batch)
                acc.backward(loss)
                self.guard.add(loss)
                ok = True
                if acc.sync_gradients:  # one all-reduce for both step decisions every rank must share
                    bad, stop_votes = agree(acc, self.guard.take(), stop_requested_here(self.run.stop))
                    ok = finite = bad == 0  # a non-finite step is skipped everywhere
                    stop = stop_votes > 0
                if ok:
                    if acc.sync_gradients and t.max_grad_norm is not None:
                        acc.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                    self.optimizer.step()
                    if acc.sync_gradients:
                        self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            batch_tokens, batch_samples = self.task.batch_size(batch)
            tokens, samples = tokens + batch_tokens, samples + batch_samples
        return StepOutcome(losses, finite, stop, tokens, samples)

    def save_checkpoint(self) -> None:
        state = trainer_state(self.cfg, self.step, self.world, self.total_steps, self.stage, self.steps_per_epoch)
        state["meter"] = self.meter.state()  # a collective: every rank saves
        if self.early_stop:
            state["early_stop"] = self.early_stop
        self.last_checkpoint = str(save_checkpoint(self.accelerator, self.run, self.step, state,
                                                   self.cfg.train.keep_checkpoints))

    def fit(self) -> RunResult:
        t, acc = self.cfg.train, self.accelerator
        log.info("training %d steps (%d per epoch), %d processes, global batch %d", self.total_steps,
                 self.steps_per_epoch, self.world, t.micro_batch_size * t.grad_accum * self.world)
        self.bar = tqdm(total=self.total_steps, initial=self.step, desc="train", mininterval=1.0, dynamic_ncols=True,
                        disable=not (acc.is_main_process and t.progress_bar))
        self.model.train()
        batches, stopped = self.step_batches(), False
        while self.step < self.total_steps and not stopped and self.early_stop is None:
            outcome = self.train_step(next(batches))
            self.step += 1
            self.steps_this_run += 1
            self.bar.update(1)
            if outcome.finite:
                self.guard.ok()
            else:
                self.guard.skipped(self.step, self.last_checkpoint)
            saved = self.last_checkpoint
            for hook in self.hooks:
                hook.observe(self, outcome)
                if hook.should_run(self.step):
                    hook.run(self, self.step)
            stopped = self.early_stop is None and self.step < self.total_steps and (
                outcome.stop or self.steps_this_run == t.stop_after_steps)
            if stopped and self.last_checkpoint == saved:
                self.save_checkpoint()
        batches.close()
        self.bar.close()
        if self.early_stop is not None:
            self.total_steps = self.step  # its checkpoint says finished (run-status; a requeued job stops)
        log.info("%d optimizer steps in this run (%d-%d)", self.steps_this_run, self.step - self.steps_this_run + 1,
                 self.step)
        if stopped:
            why = f"signal {stop_signal()}" if stop_signal() else "a STOP file or train.stop_after_steps"
            log.info("stopped at step %d on %s; checkpoint %s; resume with train.resume_from=auto", self.step, why,
                     self.last_checkpoint)
            end_run(acc)
            return RunResult(self.step, stopped=True)
        self.save_checkpoint()
        step = self.validation.restore_if_better(self)
        results = final_evaluation(self, step)
        self.export()
        end_run(acc)
        return RunResult(step, stopped=False, metrics=results, early_stop=self.early_stop)

    def export(self) -> None:
        """``final/``: every rank joins the gather (a collective under ZeRO-3); the main process writes. A task
        with no export adapter (training role only) leaves checkpoints and metrics, no ``final/``."""
        acc = self.accelerator
        if not self.task.exports:
            log.info("task %s has no export adapter: no %s (its checkpoints hold the weights)", self.task.name,
                     self.run.final)
            return
        state_dict = acc.get_state_dict(self.model)
        if acc.is_main_process:
            final, tmp = self.run.final, self.run.final_tmp
            remove_layout_path(self.run.root, tmp)
            write_export(tmp, state_dict, acc.unwrap_model(self.model), self.data.tokenizer, self.cfg, self.task,
                         self.data, root=self.run.root)
            remove_layout_path(self.run.root, final)  # the old export goes only once the new one is complete
            tmp.rename(final)
            log.info("exported %s", final)
        acc.wait_for_everyone()


def train(cfg: RunConfig, task: Task) -> RunResult:
    """Train; SIGTERM/SIGUSR1 (scancel, preemption) end the run with a checkpoint at the next step."""
    configure_threads()  # a no-op after the CLI's call; sizes torch's threads for callers from Python
    with stop_signals_requested():
        trainer = Trainer(cfg, task)
        try:
            try:
                trainer.setup()
            except UserError:  # refused its input: a directory it found new or empty is left as it was
                if trainer.accelerator is not None and trainer.accelerator.is_main_process:
                    discard_fresh(trainer.run, trainer.opened)
                raise
            return trainer.fit()
        finally:
            close_log_files()

