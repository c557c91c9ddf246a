"""Run with 2 processes (torchrun): resolve_resume is decided by rank 0 and shared. Rank 1 is given an output
dir with no checkpoints at all, so an answer other than rank 0's shows that it decided on its own.

    torchrun --nproc_per_node 2 -m tests.training.decide_worker GOOD_DIR BROKEN_DIR RESULT_PREFIX"""

from __future__ import annotations

import json
import sys

import torch.distributed as dist

from translrec_dist.errors import ConfigError
from translrec_dist.run_dir import RunDir
from translrec_dist.training.checkpoint import resolve_resume
from translrec_dist.training.distributed import shutdown_process_group


def main() -> None:
    good, broken, prefix = sys.argv[1:4]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    elsewhere = f"{good}-rank{rank}-sees-nothing"
    result = {"good": str(resolve_resume("auto", RunDir(good if rank == 0 else elsewhere)))}
    try:
        resolve_resume("auto", RunDir(broken if rank == 0 else elsewhere))
        result["broken"] = "no error"
    except ConfigError as e:
        result["broken"] = str(e)
    with open(f"{prefix}{rank}.json", "w") as f:
        json.dump(result, f)
    shutdown_process_group()  # leaves without the exit-time abort that fails a launch (see its docstring)


if __name__ == "__main__":
    main()
