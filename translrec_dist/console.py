"""What reaches the terminal: our log lines and real warnings on stderr, the command's result alone on stdout.

Library messages that say nothing to the user of a run go to the run's log file (``RunDir.log_file``) instead of
the terminal: transformers' LOAD REPORT tables (a pooler the encoder does not use, for instance) and the
FutureWarnings torch raises on every collective DeepSpeed ZeRO-3 makes (hundreds per run). Every other warning
still shows. ``--debug`` shows everything. Libraries that print to stdout (DeepSpeed's "op built successfully")
are sent to stderr while a command runs, so that stdout stays parseable JSON under every launcher.

Stdlib only (and ``safe_io``): plumbing commands (``config-get``, ``run-status``) import it without torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from translrec_dist import safe_io

# logger name -> messages (regular expressions, searched) that belong in the log file, not on the terminal
LOG_FILE_ONLY = {
    "transformers.modeling_utils": [r"LOAD REPORT"],
    "py.warnings": [r"FutureWarning: `torch\.distributed\.\w+` is deprecated"],
}
FORMAT = "%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s"
_file_handlers: list[logging.Handler] = []


class LogFileOnly(logging.Filter):
    """Sends a known-harmless record to the log files only (a logger-level filter: it sees the record whatever
    handlers the library set up, and whether or not it propagates)."""

    def __init__(self, patterns: list[str], show: bool):
        super().__init__()
        self.patterns, self.show = [re.compile(p) for p in patterns], show

    def filter(self, record: logging.LogRecord) -> bool:
        if self.show or not any(p.search(record.getMessage()) for p in self.patterns):
            return True
        for handler in _file_handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
        return False


def setup_logging(debug: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if debug else (logging.INFO if rank == 0 else logging.WARNING)
    logging.basicConfig(level=level, format=FORMAT.format(rank=rank), datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("datasets", "transformers", "accelerate", "DeepSpeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not debug else logging.INFO)
    logging.captureWarnings(True)  # warnings become log records: filtered below, copied to the log file
    for name, patterns in LOG_FILE_ONLY.items():
        logging.getLogger(name).addFilter(LogFileOnly(patterns, show=debug))
    if not debug:  # transformers' per-load "Loading weights" bars (read at its import)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def log_to_file(path: Path, root: Path) -> None:
    """Every record of this process from now on (INFO and up, the quiet ones too) is appended to ``path``, a file
    inside the run directory ``root`` (appended to, so checked like every write there: no link on the way)."""
    safe_io.make_dirs(path.parent, root)
    safe_io.check_inside(path, root)
    if path.exists() and not path.is_file():
        raise safe_io.UnsafePathError(f"{path} exists and is not a regular file; refusing to log into it")
    handler = logging.FileHandler(path, encoding="utf-8")
    rank = int(os.environ.get("RANK", "0"))
    handler.setFormatter(logging.Formatter(FORMAT.format(rank=rank), datefmt="%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO:  # ranks > 0 print warnings only, but their file keeps the INFO lines
        for h in root.handlers:
            if h is not handler and h.level == logging.NOTSET:
                h.setLevel(root.level)
        root.setLevel(logging.INFO)
    _file_handlers.append(handler)


def close_log_files() -> None:
    root = logging.getLogger()
    for handler in _file_handlers:
        root.removeHandler(handler)
        handler.close()
    _file_handlers.clear()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 points at stderr inside the block (Python prints, C code and child processes alike);
    the command prints its result after it."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
