"""What a checkpoint records about the run that wrote it, and the checks before resuming from one."""

from __future__ import annotations

from pathlib import Path

from translrec_dist.errors import ConfigError, DataError


def strategy_label(stage: int | None) -> str:
    return "ddp" if stage is None else f"zero{stage}"


def trainer_state(cfg, step: int, world: int, total_steps: int, stage: int | None, spe: int) -> dict:
    t = cfg.train
    # The data position of every rank: all ranks take the same steps, so each has consumed exactly
    # batches_into_epoch micro-batches of its deterministic per-epoch stream (the loader skips them on resume).
    epoch, in_epoch = divmod(step, spe)
    global_batch = t.micro_batch_size * t.grad_accum * world
    return {"step": step, "world_size": world, "micro_batch_size": t.micro_batch_size, "grad_accum": t.grad_accum,
            "total_steps": total_steps, "distributed": strategy_label(stage),
            "data": {"epoch": epoch, "batches_into_epoch": in_epoch * t.grad_accum, "steps_per_epoch": spe,
                     "streaming": cfg.data.streaming, "global_batch": global_batch,
                     # Map-style: the ranks take the micro-batches of one per-epoch order in turn, so after k steps
                     # the first k x global_batch samples of that order are consumed whatever the world size.
                     "samples_into_epoch": in_epoch * global_batch, "samples_consumed": step * global_batch}}


def check_resume_compatible(cfg, state: dict, world: int, path: Path, stage: int | None, spe: int) -> bool:
    """Called before anything is loaded: a mismatch stops the run instead of resuming wrongly (or hanging).
    Returns whether a ZeRO checkpoint must be re-partitioned for this number of processes (``training.universal``).
    """
    t = cfg.train
    how = (f"To continue with this setup, consolidate it (translrec export {path} OUT_DIR) and start a new run "
           f"with model.init_from=OUT_DIR")
    saved = state.get("distributed", "ddp")
    if saved != strategy_label(stage):
        raise ConfigError(f"{path} was written by a {saved} run; this run uses {strategy_label(stage)}. Resume "
                          f"with the same train.distributed, or: {how}")
    old_world = state["world_size"]
    if cfg.data.streaming and (old_world != world or state.get("data", {}).get("steps_per_epoch") != spe):
        # Each rank streams whole shards, so which examples the first k steps took depends on the world size.
        data = state.get("data", {})
        done = data.get("batches_into_epoch", 0) // state["grad_accum"]
        g = state["micro_batch_size"] * state["grad_accum"] * old_world
        taken, left = done * g, (data.get("steps_per_epoch", done) - done) * g
        raise ConfigError(f"{path} was written by a streamed run with {old_world} processes, {taken} samples into "
                          f"epoch {data.get('epoch', '?')} ({left} left in it); on {world} processes the streams "
                          f"are split otherwise, so continuing would repeat or lose up to {taken} of them; resume "
                          f"it with {old_world} processes and the same prepared data, or: {how}")
    before = state["micro_batch_size"] * state["grad_accum"] * old_world
    now = t.micro_batch_size * t.grad_accum * world
    if before != now:
        raise ConfigError(f"{path} was written with a global batch of {before} "
                          f"({old_world} processes x micro {state['micro_batch_size']} x accum "
                          f"{state['grad_accum']}); this run has {now}. Resume with the same global batch (on "
                          f"{world} processes: micro_batch_size x grad_accum = {before / world:g}), or: {how}")
    if cfg.data.group_by_length and state["micro_batch_size"] * old_world != t.micro_batch_size * world:
        # the grouped order is built in windows of micro x world rows: another split is another order
        raise ConfigError(f"{path} was written with data.group_by_length over micro {state['micro_batch_size']} x "
                          f"{old_world} processes; keep micro_batch_size x processes = "
                          f"{state['micro_batch_size'] * old_world} to resume, or: {how}")
    return stage is not None and old_world != world


def check_enough_data(cfg, n: int, world: int, spe: int) -> None:
    t = cfg.train
    if spe == 0:
        raise DataError(f"{n} training examples cannot fill one optimizer step of micro_batch_size="
                        f"{t.micro_batch_size} x grad_accum={t.grad_accum} x {world} processes; lower them")
