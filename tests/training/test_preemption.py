"""SIGTERM/SIGUSR1 become a stop request only while training, and the old handlers come back after."""

from __future__ import annotations

import os
import signal

from translrec_dist.training.preemption import stop_signal, stop_signals_requested


def test_signal_becomes_stop_request_and_handlers_are_restored():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    with stop_signals_requested():
        assert stop_signal() is None
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # a repeat (srun and torchrun both forward) changes nothing
        assert stop_signal() == "SIGUSR1"
    assert {sig: signal.getsignal(sig) for sig in before} == before
    with stop_signals_requested():
        assert stop_signal() is None  # a new training run starts without the old request
