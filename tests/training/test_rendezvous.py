"""Multi-node pre-flight: `translrec check-master` and `translrec config-get` (used by slurm/job.sh)."""

from __future__ import annotations

import socket

from tests.conftest import TINY
from translrec_dist.cli import main


def test_check_master_names_address_and_port_when_unreachable(capsys):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["check-master", "127.0.0.1", str(port), "--timeout", "0.5"]) == 2
    assert f"cannot reach the rendezvous master at 127.0.0.1:{port}" in capsys.readouterr().err


def test_check_master_returns_once_the_master_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["check-master", "127.0.0.1", str(s.getsockname()[1]), "--timeout", "5"]) == 0


def test_config_get_prints_resolved_value_and_rejects_unknown_keys(capsys):
    assert main(["config-get", str(TINY), "output_dir", "output_dir=/scratch/run1"]) == 0
    assert capsys.readouterr().out.strip() == "/scratch/run1"
    assert main(["config-get", str(TINY), "train.max_steps"]) == 0
    assert capsys.readouterr().out.strip() == ""  # null
    assert main(["config-get", str(TINY), "train.nope"]) == 2
    assert "no key 'train.nope'" in capsys.readouterr().err
    assert main(["config-get", str(TINY), "output_dir", "train.lr=fast"]) == 2  # the whole config is validated
