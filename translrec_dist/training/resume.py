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
    return {"step": step, "world_size": world, "micro_batch_size": t.micro_batch_size, "grad_accum": t.grad_accum,
            "total_steps": total_steps, "distributed": strategy_label(stage),
            "data": {"epoch": epoch, "batches_into_epoch": in_epoch * t.grad_accum, "steps_per_epoch": spe,
                     "streaming": cfg.data.streaming}}


def check_resume_compatible(cfg, state: dict, world: int, path: Path, stage: int | None, spe: int) -> None:
    """Called before anything is loaded: a mismatch stops the run instead of resuming wrongly (or hanging)."""
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


def check_enough_data(cfg, n: int, world: int, spe: int) -> None:
    t = cfg.train
    if spe == 0:
        raise DataError(f"{n} training examples cannot fill one optimizer step of micro_batch_size="
                        f"{t.micro_batch_size} x grad_accum={t.grad_accum} x {world} processes; lower them")
