"""Only rank 0 looks for the STOP file (the all-reduce in ``agree`` shares its vote); signals count on any rank."""

from __future__ import annotations

import os
import signal

from translrec_dist.run_dir import RunDir
from translrec_dist.training.distributed import stop_requested_here
from translrec_dist.training.preemption import stop_signals_requested


def test_only_rank_0_polls_the_stop_file(tmp_path, monkeypatch):
    stop = RunDir(tmp_path).stop
    stop.touch()
    monkeypatch.setenv("RANK", "1")
    assert not stop_requested_here(RunDir(tmp_path).stop)
    monkeypatch.setenv("RANK", "0")
    assert stop_requested_here(RunDir(tmp_path).stop)
    stop.unlink()
    assert not stop_requested_here(RunDir(tmp_path).stop)


def test_a_signal_on_any_rank_is_a_stop_vote(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with stop_signals_requested():
        assert not stop_requested_here(RunDir(tmp_path).stop)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop_requested_here(RunDir(tmp_path).stop)
