"""Pre-flight check for multi-node launches: can this node reach the rendezvous master at all?

Without it, a wrong MASTER_ADDR, a firewalled port or an unresolvable host name shows up as torchrun
waiting in the rendezvous for its full timeout (15 min by default) with a message that names neither.
"""

from __future__ import annotations

import socket
import time

from translrec_dist.errors import UserError


def wait_for_master(addr: str, port: int, timeout_s: float, interval_s: float = 1.0) -> float:
    """Wait until ``addr:port`` accepts a TCP connection; return the seconds waited or raise UserError."""
    start = time.monotonic()
    last = "no attempt"
    while True:
        try:
            with socket.create_connection((addr, port), timeout=min(interval_s * 2, 5.0)):
                return time.monotonic() - start
        except socket.gaierror as e:
            raise UserError(f"cannot resolve the rendezvous master host {addr!r} (port {port}) from "
                            f"{socket.gethostname()}: {e}. Set TRANSLREC_MASTER_ADDR to a name or IP every "
                            f"node can resolve") from None
        except OSError as e:
            last = str(e) or type(e).__name__
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise UserError(f"cannot reach the rendezvous master at {addr}:{port} from {socket.gethostname()} "
                            f"after {waited:.0f} s ({last}). Check that node 0 started, that {addr} is an address the "
                            f"other nodes can reach (slurm/*.sbatch: set TRANSLREC_MASTER_ADDR) and that port {port} "
                            f"is open between nodes (TRANSLREC_MASTER_PORT); wait longer with TRANSLREC_RDZV_WAIT_S")
        time.sleep(interval_s)
