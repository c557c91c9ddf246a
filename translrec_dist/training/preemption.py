"""SIGTERM / SIGUSR1 in a training process become a stop request at the next optimizer step.

SLURM sends SIGTERM on ``scancel`` and at the time limit (SIGKILL follows after KillWait, 30 s by default);
the batch-shell trap of ``slurm/*.sbatch`` (``--signal=B:USR1@N``) writes ``output_dir/STOP`` instead,
because torchrun forwards only TERM/INT/HUP/QUIT to its workers and SIGKILLs them ~30 s after a TERM.
Either way ``distributed.stop_requested`` sees the request on some rank, all ranks agree through an
all-reduce, write one complete checkpoint and exit 0. A second signal of the same kind gets the default
action: whoever sends it twice wants the process gone now.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_received: list[int] = []


def _on_signal(signum, frame) -> None:
    if signum in _received:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _received.append(signum)
    # logging from a signal handler can deadlock on the handler's lock; write the line directly
    os.write(2, f"translrec: received {signal.Signals(signum).name}; checkpointing at the next step\n".encode())


def install_stop_handlers() -> None:
    """Turn SIGTERM/SIGUSR1 into a stop request (main thread only; elsewhere Python forbids handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)


def stop_signal() -> str | None:
    """Name of the first stop signal received by this process, or None."""
    return signal.Signals(_received[0]).name if _received else None
