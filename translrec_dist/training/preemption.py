"""SIGTERM / SIGUSR1 in a training process become a stop request at the next optimizer step.

SLURM sends SIGTERM on ``scancel`` and at the time limit (SIGKILL follows after KillWait, 30 s by default);
the batch-shell trap of ``slurm/*.sbatch`` (``--signal=B:USR1@N``) writes ``output_dir/STOP`` instead,
because torchrun forwards only TERM/INT/HUP/QUIT to its workers and SIGKILLs them ~30 s after a TERM.
Either way ``distributed.stop_requested_here`` sees the request on some rank, all ranks agree through an
all-reduce, write one complete checkpoint and exit 0. Repeated signals change nothing: under srun a worker
gets SIGTERM from slurmstepd and again from torchrun within milliseconds; both follow up with SIGKILL after
their grace period (KillWait, torchrun's 30 s), which bounds the time a checkpoint may take.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_received: list[int] = []


def _on_signal(signum, frame) -> None:
    if _received:
        return
    _received.append(signum)
    # logging from a signal handler can deadlock on the handler's lock; write the line directly
    rank = os.environ.get("RANK", "0")
    os.write(2, f"translrec: rank {rank} received {signal.Signals(signum).name}; checkpointing at the next step\n"
             .encode())


@contextlib.contextmanager
def stop_signals_requested():
    """While training: SIGTERM/SIGUSR1 become a stop request; the previous handlers come back afterwards.

    Only in the main thread (Python allows handlers nowhere else); elsewhere the signals keep their handlers.
    """
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_signal() -> str | None:
    """Name of the first stop signal received by this process (inside ``stop_signals_requested``), or None."""
    return signal.Signals(_received[0]).name if _received else None
