"""Only rank 0 looks for the STOP file (the all-reduce in ``agree`` shares its vote); signals count on any rank."""

from __future__ import annotations

import os
import signal

from translrec_dist.training.distributed import STOP_FILE, stop_requested_here
from translrec_dist.training.preemption import stop_signals_requested


def test_only_rank_0_polls_the_stop_file(tmp_path, monkeypatch):
    (tmp_path / STOP_FILE).touch()
    monkeypatch.setenv("RANK", "1")
    assert not stop_requested_here(str(tmp_path))
    monkeypatch.setenv("RANK", "0")
    assert stop_requested_here(str(tmp_path))
    (tmp_path / STOP_FILE).unlink()
    assert not stop_requested_here(str(tmp_path))


def test_a_signal_on_any_rank_is_a_stop_vote(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with stop_signals_requested():
        assert not stop_requested_here(str(tmp_path))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop_requested_here(str(tmp_path))
