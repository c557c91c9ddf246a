"""Non-finite losses: skip the optimizer step, keep the last good checkpoint, give up after N in a row.

One bad batch (a NaN label, an fp16 overflow) should cost one step, not the run; a diverged run should end
with a message instead of burning hours on NaNs. Every rank runs backward as usual (the collectives of
DDP/ZeRO stay identical); at the optimizer step the ranks all-reduce one flag, so they all skip together.
"""

from __future__ import annotations

import logging

import torch

from translrec_dist.errors import TrainingError

log = logging.getLogger(__name__)


class NonFiniteLossGuard:
    def __init__(self, accelerator, max_bad_steps: int):
        self.accelerator = accelerator
        self.max_bad_steps = max_bad_steps
        self.streak = 0  # consecutive skipped optimizer steps
        self._bad = torch.zeros((), device=accelerator.device)

    def add(self, loss: torch.Tensor) -> None:
        """Record one micro-batch loss (no host sync)."""
        self._bad += (~torch.isfinite(loss.detach())).float()

    def take(self) -> torch.Tensor:
        """This rank's count of non-finite micro-batch losses since the last optimizer step (then reset);
        the loop sums it over ranks with ``distributed.agree`` so that all ranks skip together."""
        bad = self._bad.clone()
        self._bad.zero_()
        return bad

    def skipped(self, step: int, last_checkpoint: str | None) -> None:
        self.streak += 1
        log.warning("step %d: non-finite loss on some rank; optimizer step skipped (%d in a row, limit "
                    "train.max_bad_steps=%d)", step, self.streak, self.max_bad_steps)
        if self.streak >= self.max_bad_steps:
            kept = f"The last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
            raise TrainingError(
                f"loss was NaN/inf for {self.streak} consecutive optimizer steps (steps {step - self.streak + 1}-"
                f"{step}, train.max_bad_steps={self.max_bad_steps}); stopping. {kept}. Lower train.lr, set "
                f"train.max_grad_norm, or check the data for NaN labels; resume with train.resume_from=auto")

    def ok(self) -> None:
        self.streak = 0
