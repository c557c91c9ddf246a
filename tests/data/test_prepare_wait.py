"""The other ranks' wait for the main process's prepared manifest: ends when it appears, or times out naming it."""

from __future__ import annotations

import threading
import time

import pytest

from translrec_dist.data.prepare import MANIFEST, wait_for_manifest
from translrec_dist.errors import DataError


def test_wait_ends_when_the_main_process_writes_the_manifest(tmp_path):
    timer = threading.Timer(0.5, lambda: (tmp_path / MANIFEST).write_text("{}"))
    timer.start()
    start = time.monotonic()
    wait_for_manifest(tmp_path, timeout_s=30, max_poll_s=0.2)
    timer.join()
    assert 0.5 <= time.monotonic() - start < 5


def test_wait_times_out_naming_the_path_and_the_main_process(tmp_path, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "node-0.example")
    start = time.monotonic()
    with pytest.raises(DataError) as e:
        wait_for_manifest(tmp_path, timeout_s=1.0, max_poll_s=0.2)
    assert 1.0 <= time.monotonic() - start < 3
    msg = str(e.value)
    assert str(tmp_path / MANIFEST) in msg
    assert "main process (rank 0, at MASTER_ADDR=node-0.example)" in msg and "data.cache_dir" in msg
