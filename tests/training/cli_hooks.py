"""Test-only entry point: the translrec CLI with hooks the product does not have.

    python -m tests.training.cli_hooks [--sgd] [--pause-in-save STEP] train CONFIG [overrides]

--sgd               plain SGD (no momentum, no weight decay, train.lr) instead of AdamW: AdamW's first steps are
                    about lr * sign(grad), which hides a missing gradient average or a doubly scaled loss
--pause-in-save N   the save of step N stops for ever after the ranks have written their files and before the
                    checkpoint is marked complete, after printing a marker line: the moment a test kills it
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PAUSE_MARKER = "test hook: paused inside the save of"


def sgd_optimizer(cfg, model):
    import torch

    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)


def use_sgd() -> None:
    from translrec_dist.training import trainer

    trainer.build_optimizer = sgd_optimizer


def pause_in_save(step: int) -> None:
    from translrec_dist.training import checkpoint

    write = checkpoint.write_file_manifest

    def paused(directory):
        if directory.name == f"step_{step}.tmp":
            os.write(2, f"{PAUSE_MARKER} {directory}\n".encode())
            time.sleep(3600)
        write(directory)

    checkpoint.write_file_manifest = paused


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sgd", action="store_true")
    p.add_argument("--pause-in-save", type=int)
    hooks, rest = p.parse_known_args()
    if hooks.sgd:
        use_sgd()
    if hooks.pause_in_save is not None:
        pause_in_save(hooks.pause_in_save)
    from translrec_dist.cli import main as cli_main

    return cli_main(rest)


if __name__ == "__main__":
    sys.exit(main())
