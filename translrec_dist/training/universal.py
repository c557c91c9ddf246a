"""Resuming a ZeRO checkpoint on another number of processes through DeepSpeed's universal checkpoint.

A ZeRO checkpoint holds one optimizer (and under ZeRO-3 parameter) partition per rank; DeepSpeed refuses to load
it on another world size ("not currently supported", DeepSpeed#2898/#3810/#7628). Its converter
(``deepspeed.checkpoint.ds_to_universal``) writes every parameter's weights and optimizer moments whole, and an
engine configured with ``checkpoint.load_universal`` re-partitions them over the ranks it has. Our models are
not Megatron's, so the converter is told to add the ``universal_checkpoint_info`` it would otherwise require.

The converter loads every shard with ``torch.load(weights_only=False)``: a checkpoint resumed on another world size
may come from anyone (a shared scratch folder, a copied run), so it runs in a child process (``python -m
translrec_dist.training.universal IN OUT``) under ``safe_zero``'s weights-only allow-list, and a shard naming any
other global is refused with exit 2 before anything in it runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from translrec_dist.errors import ConfigError, TrainingError
from translrec_dist.run_dir import RunDir

log = logging.getLogger(__name__)
REFUSED = 3  # (not 1: a crash, nor 2: argparse) the converter's exit status for a checkpoint it would not unpickle
MODEL_TAG = "pytorch_model"  # accelerate's tag for the (first) DeepSpeed engine's checkpoint folder


def convert_to_universal(checkpoint: Path, old_world: int, new_world: int) -> Path:
    """On the main process: ``step_N`` -> ``step_N.universal`` (always rebuilt: a step_N of an earlier run in
    the same output dir may have left one). The other files accelerate loads (scheduler, RNG states) are copied."""
    out = RunDir.universal(checkpoint)
    tmp = out.with_name(out.name + ".tmp")
    for old in (out, tmp):
        shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "translrec_dist.training.universal", str(checkpoint / MODEL_TAG),
           str(tmp / MODEL_TAG)]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        if proc.returncode == REFUSED:  # the child's one-line reason: a global outside the allow-list
            raise ConfigError(proc.stderr.strip().splitlines()[-1][:2000])
        raise TrainingError(f"converting {checkpoint} (ZeRO, {old_world} processes) to a universal checkpoint for "
                            f"{new_world} processes failed:\n{proc.stderr[-3000:]}\nResume with {old_world} "
                            f"processes, or consolidate it (translrec export {checkpoint} OUT_DIR) and start a new "
                            f"run with model.init_from=OUT_DIR")
    for f in checkpoint.iterdir():
        if f.is_file():
            shutil.copy2(f, tmp / f.name)
    tmp.rename(out)
    log.info("converted %s (ZeRO, %d processes) to the universal checkpoint %s for %d processes in %.1f s",
             checkpoint, old_world, out, new_world, time.perf_counter() - start)
    return out


def load_universal_on_prepare(accelerator) -> None:
    """Before ``accelerator.prepare``: the engine reads ``checkpoint.load_universal`` when it is built."""
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    ds.setdefault("checkpoint", {})["load_universal"] = True


def repartitioned(accelerator, checkpoint: Path, old_world: int) -> Path:
    """A ZeRO checkpoint of another world size: its universal form, loaded when the engine is prepared."""
    from translrec_dist.training.distributed import decided_by_main

    converted = decided_by_main(lambda: convert_to_universal(checkpoint, old_world, accelerator.num_processes))
    load_universal_on_prepare(accelerator)
    return converted


def convert_weights_only(input_folder: str, output_folder: str) -> int:
    """DeepSpeed's converter, every ``torch.load`` in it weights-only (one process: no worker pool to escape to)."""
    from deepspeed.checkpoint import ds_to_universal

    from translrec_dist.training.safe_zero import START_NEW_RUN, checkpoint_loads

    args = ["--input_folder", input_folder, "--output_folder", output_folder, "--inject_missing_state",
            "--num_extract_workers", "1", "--num_merge_workers", "1"]
    sys.argv = [ds_to_universal.__file__, *args]
    try:
        with checkpoint_loads(Path(input_folder), START_NEW_RUN):
            ds_to_universal.main(ds_to_universal.parse_arguments())
    except ConfigError as e:
        print(f"\n{e}", file=sys.stderr)
        return REFUSED
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(convert_weights_only(sys.argv[1], sys.argv[2]))
