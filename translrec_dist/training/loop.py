"""The training entry point: build config, data, model, run the loop. Same code on 1 CPU or N GPUs."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from translrec_dist.config import RunConfig, dump_config
from translrec_dist.data import build_tokenizer, load_prepared_splits, load_text_splits, tokenize_splits, tokenizer_dir
from translrec_dist.data.collate import PadCollator
from translrec_dist.data.loader import eval_loader, train_loader, train_steps_per_epoch
from translrec_dist.data.tokenize import load_tokenizer, save_tokenizer
from translrec_dist.evaluation import evaluate
from translrec_dist.models.cross_encoder import build_model, save_export
from translrec_dist.models.transfer import encoder_depth, layer_lr_scale
from translrec_dist.training.checkpoint import (
    STATE_FILE,
    best_checkpoint,
    checkpoint_root,
    load_checkpoint,
    read_trainer_state,
    resolve_resume,
    save_checkpoint,
    save_state_atomically,
)
from translrec_dist.training.distributed import agree, build_accelerator, stop_requested_here, zero_stage
from translrec_dist.training.memory import write_memory_report
from translrec_dist.training.nonfinite import NonFiniteLossGuard
from translrec_dist.training.preemption import stop_signal, stop_signals_requested
from translrec_dist.training.tasks import SELF_LOSS_TASKS, build_self_loss_task
from translrec_dist.training.tracking import init_tracking

log = logging.getLogger(__name__)


def loss_fn(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task == "ctr":
        return F.binary_cross_entropy_with_logits(logits.float(), labels)
    return F.mse_loss(logits.float(), labels)


def build_optimizer(cfg: RunConfig, model) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm; optional separate head learning rate and
    layer-wise decay of the encoder's learning rate (train.layer_lr_decay)."""
    t = cfg.train
    num_layers = encoder_depth(model)
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = (t.head_lr or t.lr) if name.startswith("head.") else t.lr * layer_lr_scale(name, num_layers,
                                                                                        t.layer_lr_decay)
        wd = 0.0 if p.ndim < 2 else t.weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
                             lr=t.lr, foreach=True)


def prepare_output_dir(cfg: RunConfig, accelerator, resuming: bool) -> Path:
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            if checkpoint_root(out).exists():
                log.warning("%s holds checkpoints of an earlier run; starting over (pass train.resume_from=auto "
                            "to continue it instead)", checkpoint_root(out))
                shutil.rmtree(checkpoint_root(out))
            (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "STOP").unlink(missing_ok=True)
        dump_config(cfg, out / "config.yaml")
    accelerator.wait_for_everyone()
    return out


def get_tokenizer(cfg: RunConfig, texts, accelerator, resuming: bool):
    """Tiny models: the main process trains the vocabulary once and the others load it (identical ids)."""
    saved = tokenizer_dir(cfg)
    if cfg.model.tiny is None or cfg.model.init_from:
        return build_tokenizer(cfg, texts)
    if accelerator.is_main_process and not (resuming and saved.is_dir()):
        save_tokenizer(build_tokenizer(cfg, texts), saved)
    accelerator.wait_for_everyone()
    return load_tokenizer(str(saved))


def train(cfg: RunConfig) -> dict:
    """Train; SIGTERM/SIGUSR1 (scancel, preemption) end the run with a checkpoint at the next step."""
    with stop_signals_requested():
        return run_training(cfg)


def run_training(cfg: RunConfig) -> dict:
    accelerator = build_accelerator(cfg)
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_seed(cfg.seed, deterministic=cfg.train.deterministic)
    resume_path = resolve_resume(cfg.train.resume_from, cfg.output_dir)
    out = prepare_output_dir(cfg, accelerator, resuming=resume_path is not None)

    # ---- data and model
    t, task = cfg.train, cfg.task
    if task in SELF_LOSS_TASKS:  # the model computes its loss; the task brings its data and evaluator
        setup = build_self_loss_task(cfg, lambda texts: get_tokenizer(cfg, texts, accelerator, resume_path is not None))
        tokenizer, splits, collate, model = setup.tokenizer, setup.splits, setup.collate, setup.model
        evaluate_split, write_export = setup.evaluate, setup.save_export
    else:
        if cfg.data.streaming:  # prepared shards (translrec prepare; built here if missing), streamed per rank
            prepared = load_prepared_splits(cfg, accelerator.is_main_process)
            tokenizer, splits, label_mean = prepared.tokenizer, prepared.splits, prepared.label_mean
        else:
            texts = load_text_splits(cfg)
            tokenizer = get_tokenizer(cfg, texts, accelerator, resuming=resume_path is not None)
            splits = tokenize_splits(cfg, texts, tokenizer)
            label_mean = float(texts.frames["train"]["label"].mean()) if task == "rating" else None
        collate = PadCollator(tokenizer.pad_token_id, cfg.data.pad_to_multiple_of)
        model = build_model(cfg, tokenizer, label_mean)
        write_export = save_export

        def evaluate_split(prepared, split: str, accelerator) -> dict:
            loader = eval_loader(splits[split], collate, batch_size=cfg.eval.micro_batch_size,
                                 rank=accelerator.process_index, world=accelerator.num_processes)
            return evaluate(prepared, loader, accelerator, task)

    spe = train_steps_per_epoch(splits["train"], t.micro_batch_size, t.grad_accum, world)
    if spe == 0:
        raise_small_data(cfg, len(splits["train"]), world)
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * spe))
    lengths = None  # tokens per row, for length grouping of map-style data (streaming groups on its own)
    if cfg.data.group_by_length and not cfg.data.streaming and task not in SELF_LOSS_TASKS:
        lengths = np.fromiter(map(len, splits["train"]["input_ids"]), dtype=np.int64, count=len(splits["train"]))
    optimizer = build_optimizer(cfg, model)
    scheduler = get_scheduler(t.schedule, optimizer, num_warmup_steps=int(t.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    # DeepSpeed's engine set-up draws from the torch RNG (differently per stage): re-seed so dropout masks are
    # the same under every strategy and a ZeRO run reproduces the DDP loss curve.
    set_seed(cfg.seed, deterministic=cfg.train.deterministic)
    init_tracking(accelerator, cfg, out, flat_config(cfg))  # ecosystem: train.project/run_name, run id kept

    stage = zero_stage(accelerator)
    step, best = 0, read_best(cfg)
    if resume_path is not None:
        check_resume_compatible(cfg, read_trainer_state(resume_path), world, resume_path, stage, spe)
        step = load_checkpoint(accelerator, resume_path)["step"]
        log.info("resumed from %s at step %d", resume_path, step)

    log.info("training %d steps (%d per epoch), %d processes, global batch %d", total_steps, spe, world,
             t.micro_batch_size * t.grad_accum * world)
    bar = tqdm(total=total_steps, initial=step, desc="train", mininterval=1.0, disable=not (accelerator.is_main_process
                                                                           and t.progress_bar), dynamic_ncols=True)
    meter = Meter(accelerator)
    guard = NonFiniteLossGuard(accelerator, t.max_bad_steps)
    last_checkpoint = str(resume_path) if resume_path else None
    stopped_early = stop_signalled = False
    steps_this_run = 0
    model.train()
    while step < total_steps:
        epoch, in_epoch = divmod(step, spe)
        loader = train_loader(splits["train"], collate, micro=t.micro_batch_size, accum=t.grad_accum, rank=rank,
                              world=world, seed=cfg.seed, epoch=epoch, skip_batches=in_epoch * t.grad_accum,
                              num_workers=cfg.data.num_workers, lengths=lengths)
        for i, batch in enumerate(loader):
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    output = model(**batch)
                loss = output if task in SELF_LOSS_TASKS else loss_fn(task, output, batch["labels"])
                accelerator.backward(loss)
                guard.add(loss)
                finite = True
                if accelerator.sync_gradients:  # one all-reduce for both step decisions every rank must share
                    bad, stop_votes = agree(accelerator, guard.take(), stop_requested_here(cfg.output_dir))
                    finite, stop_signalled = bad == 0, stop_votes > 0  # a non-finite step is skipped everywhere
                if finite:
                    if accelerator.sync_gradients and t.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            meter.add(loss.detach(), batch)
            if (i + 1) % t.grad_accum:
                continue
            step += 1
            steps_this_run += 1
            bar.update(1)
            if steps_this_run == 1:  # optimizer state exists now; a collective, so every rank writes it
                write_memory_report(accelerator, model, optimizer, stage, out)
            if finite:
                guard.ok()
            else:
                guard.skipped(step, last_checkpoint)
            if step % t.log_every == 0 or step == total_steps:
                record = meter.flush(step, step / spe, scheduler.get_last_lr()[0])
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                write_metrics(accelerator, out, record)
            if cfg.eval.every_steps and step % cfg.eval.every_steps == 0 and step < total_steps:
                valid = evaluate_split(model, "valid", accelerator)
                write_metrics(accelerator, out, {"step": step, **{f"valid/{k}": v for k, v in valid.items()}})
                best = keep_if_best(cfg, accelerator, valid, step, best)
            state = trainer_state(cfg, step, world, total_steps, stage, spe)
            stop = stop_signalled or (t.stop_after_steps is not None and steps_this_run >= t.stop_after_steps)
            periodic = t.checkpoint_every and step % t.checkpoint_every == 0 and guard.streak == 0
            if step < total_steps and (stop or periodic):
                last_checkpoint = str(save_checkpoint(accelerator, cfg.output_dir, step, state, t.keep_checkpoints))
            if stop and step < total_steps:
                stopped_early = True
                break
            if step >= total_steps:
                break
        if stopped_early:
            break
    bar.close()

    if stopped_early:
        why = f"signal {stop_signal()}" if stop_signal() else "a STOP file or train.stop_after_steps"
        log.info("stopped at step %d on %s; checkpoint %s; resume with train.resume_from=auto", step, why,
                 last_checkpoint)
        accelerator.end_training()
        return {"stopped": True, "step": step}

    save_checkpoint(accelerator, cfg.output_dir, step, trainer_state(cfg, step, world, total_steps, stage, spe),
                    t.keep_checkpoints)
    step = restore_if_better(cfg, accelerator, model, evaluate_split, step, best)
    results = final_evaluation(cfg, model, evaluate_split, accelerator, step)
    export(cfg, accelerator, model, tokenizer, write_export)
    accelerator.end_training()
    return results


def metric_value(cfg: RunConfig, metrics: dict) -> float:
    from translrec_dist.errors import ConfigError

    if cfg.eval.best_metric not in metrics:
        raise ConfigError(f"eval.best_metric={cfg.eval.best_metric} is not a validation metric of task={cfg.task}; "
                          f"choose one of {', '.join(k for k in metrics if k != 'step')} ({cfg.source})")
    return float(metrics[cfg.eval.best_metric])


def read_best(cfg: RunConfig) -> dict | None:
    path = best_checkpoint(cfg.output_dir) / STATE_FILE
    return json.loads(path.read_text()) if cfg.eval.best_metric and path.is_file() else None


def keep_if_best(cfg: RunConfig, accelerator, valid: dict, step: int, best: dict | None) -> dict | None:
    """Checkpoint selection on validation (higher is better, e.g. ndcg@10): the best state is kept aside."""
    if not cfg.eval.best_metric:
        return best
    value = metric_value(cfg, valid)
    if best is not None and value <= best["value"]:
        return best
    best = {"step": step, "value": value, "metric": cfg.eval.best_metric}
    save_state_atomically(accelerator, best_checkpoint(cfg.output_dir), best)
    return best


def restore_if_better(cfg: RunConfig, accelerator, model, evaluate_split, step: int, best: dict | None) -> int:
    """Go back to the best validated state when the last step validates worse; returns the step evaluated."""
    if best is None or best["step"] == step:
        return step
    last = metric_value(cfg, evaluate_split(model, "valid", accelerator))
    if last >= best["value"]:
        log.info("last step validates best (%s=%.4f)", cfg.eval.best_metric, last)
        return step
    log.info("restoring step %d (%s=%.4f > %.4f at the last step)", best["step"], cfg.eval.best_metric,
             best["value"], last)
    accelerator.load_state(str(best_checkpoint(cfg.output_dir)))
    return best["step"]


def final_evaluation(cfg, model, evaluate_split, accelerator, step: int) -> dict:
    results: dict = {}
    for split in cfg.eval.splits:
        metrics = {**evaluate_split(model, split, accelerator), "step": step}
        if split == "test":
            results.update(metrics)
        else:
            results[split] = metrics
    if accelerator.is_main_process:
        Path(cfg.output_dir, "eval.json").write_text(json.dumps(results, indent=2))
        log.info("eval: %s", json.dumps(results))
    write_metrics(accelerator, Path(cfg.output_dir), {"step": step, **{f"eval/{k}": v for k, v in results.items()
                                                                        if not isinstance(v, dict)}})
    return results


def export(cfg: RunConfig, accelerator, model, tokenizer, write_export=save_export) -> None:
    """``final/``: every rank joins the gather (a collective under ZeRO-3); the main process writes."""
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        final, tmp = Path(cfg.output_dir, "final"), Path(cfg.output_dir, "final.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_export(tmp, state_dict, accelerator.unwrap_model(model), tokenizer, cfg)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        log.info("exported %s", final)
    accelerator.wait_for_everyone()


def trainer_state(cfg: RunConfig, step: int, world: int, total_steps: int, stage: int | None, spe: int) -> dict:
    t = cfg.train
    # The data position of every rank: all ranks take the same steps, so each has consumed exactly
    # batches_into_epoch micro-batches of its deterministic per-epoch stream (the loader skips them on resume).
    epoch, in_epoch = divmod(step, spe)
    return {"step": step, "world_size": world, "micro_batch_size": t.micro_batch_size, "grad_accum": t.grad_accum,
            "total_steps": total_steps, "distributed": strategy_label(stage),
            "data": {"epoch": epoch, "batches_into_epoch": in_epoch * t.grad_accum, "steps_per_epoch": spe,
                     "streaming": cfg.data.streaming}}


def strategy_label(stage: int | None) -> str:
    return "ddp" if stage is None else f"zero{stage}"


def check_resume_compatible(cfg: RunConfig, state: dict, world: int, path: Path, stage: int | None,
                            spe: int) -> None:
    """Called before anything is loaded: a mismatch stops the run instead of resuming wrongly (or hanging)."""
    from translrec_dist.errors import ConfigError

    t = cfg.train
    how = (f"To continue with this setup, consolidate it (translrec export {path} OUT_DIR) and start a new run "
           f"with model.init_from=OUT_DIR")
    saved = state.get("distributed", "ddp")
    if saved != strategy_label(stage):
        raise ConfigError(f"{path} was written by a {saved} run; this run uses {strategy_label(stage)}. Resume "
                          f"with the same train.distributed, or: {how}")
    if stage is not None and state["world_size"] != world:
        # A ZeRO checkpoint holds one optimizer (and for ZeRO-3 parameter) partition per rank.
        raise ConfigError(f"{path} is a {saved} checkpoint partitioned over {state['world_size']} processes; this "
                          f"run has {world}. Resume with {state['world_size']} processes, or: {how}")
    if cfg.data.streaming and (state["world_size"] != world or state.get("data", {}).get("steps_per_epoch") != spe):
        # Each rank's stream and the steps per epoch depend on the world size and the shards.
        raise ConfigError(f"{path} was written by a streamed run with {state['world_size']} processes; resume it "
                          f"with {state['world_size']} processes and the same prepared data, or: {how}")
    before = state["micro_batch_size"] * state["grad_accum"] * state["world_size"]
    now = t.micro_batch_size * t.grad_accum * world
    if before != now:
        raise ConfigError(f"{path} was written with a global batch of {before} "
                          f"({state['world_size']} processes x micro {state['micro_batch_size']} x accum "
                          f"{state['grad_accum']}); this run has {now}. Resume with the same global batch, or: "
                          f"{how}")


def raise_small_data(cfg: RunConfig, n: int, world: int):
    from translrec_dist.errors import DataError

    t = cfg.train
    raise DataError(f"{n} training examples cannot fill one optimizer step of micro_batch_size="
                    f"{t.micro_batch_size} x grad_accum={t.grad_accum} x {world} processes; lower them")


class Meter:
    """Accumulates loss and counts on the device; syncs with the host only when a log line is written."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.reset()

    def reset(self):
        dev = self.accelerator.device
        self.loss = torch.zeros((), device=dev)
        self.tokens = torch.zeros((), device=dev, dtype=torch.long)
        self.samples, self.micro_steps, self.start = 0, 0, time.perf_counter()

    def add(self, loss: torch.Tensor, batch: dict) -> None:
        self.loss += loss
        self.tokens += batch["attention_mask"].sum()
        self.samples += len(batch["labels"])
        self.micro_steps += 1

    def flush(self, step: int, epoch: float, lr: float) -> dict:
        acc = self.accelerator
        stats = torch.stack([self.loss / max(self.micro_steps, 1), self.tokens.float(),
                             torch.tensor(float(self.samples), device=acc.device)])
        stats = acc.reduce(stats, reduction="sum") if acc.num_processes > 1 else stats
        loss, tokens, samples = stats.tolist()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        record = {"step": step, "epoch": round(epoch, 4), "loss": loss / acc.num_processes, "lr": lr,
                  "samples_per_s": samples / elapsed, "tokens_per_s": tokens / elapsed}
        self.reset()
        return record


def write_metrics(accelerator, out: Path, record: dict) -> None:
    if accelerator.is_main_process:
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
    accelerator.log({k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))},
                    step=record["step"])


def flat_config(cfg: RunConfig) -> dict:
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)

    walk(cfg.to_dict())
    return flat
