"""Writing into a directory someone else may have prepared, and reading files someone else wrote.

An export or run directory may come from another person (a downloaded model, a shared scratch folder). A
plain ``Path.write_text`` follows a symlink planted there and overwrites a file anywhere the user can write;
a "weights file" that is a link to ``/dev/zero`` or a FIFO hangs a reader. So every write of the package into
such a directory goes through ``write_bytes`` / ``write_text`` / ``write_json``: the target and every folder
between it and the directory's root must be real (no link), stay inside the root, and the data lands in a
temporary file in the same folder that is then renamed over the target (``os.replace``), so a reader never
sees half a file and a crash leaves the old one. Reads of such files go through ``check_regular``.

Stdlib only: every layer may import it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from translrec_dist.errors import ConfigError


class UnsafePathError(ConfigError):
    """A path the package was about to write or read is a link, leaves its directory, or is not a regular file."""


def check_inside(path: str | Path, root: str | Path) -> Path:
    """``path`` (which may not exist yet) with every existing component from ``root`` down checked: no link,
    and the resolved path inside ``root``. ``root`` itself may be a link (a user's choice of where runs live)."""
    path, root = Path(path), Path(root)
    try:
        rel = path.relative_to(root) if path.is_absolute() == root.is_absolute() else None
    except ValueError:
        rel = None
    if rel is None or ".." in rel.parts:
        raise UnsafePathError(f"{path} is not inside {root}; refusing to write there")
    node = root
    for part in rel.parts:
        node = node / part
        if node.is_symlink():
            raise UnsafePathError(f"{node} is a symbolic link; refusing to write through it (it points to "
                                  f"{_short(os.readlink(node))}). Remove the link or choose another directory")
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root):
        raise UnsafePathError(f"{path} resolves outside {root}; refusing to write there")
    return path


def make_dirs(path: str | Path, root: str | Path) -> Path:
    """``mkdir -p path`` under ``root``, refusing links on the way."""
    path = check_inside(path, root)
    path.mkdir(parents=True, exist_ok=True)
    check_inside(path, root)  # a link raced in between: refuse before anything is written into it
    return path


def write_bytes(path: str | Path, data: bytes, root: str | Path) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + rename), never through a link."""
    path = Path(path)
    make_dirs(path.parent, root)
    check_inside(path, root)
    if path.exists() and not path.is_file():
        raise UnsafePathError(f"{path} exists and is not a regular file; refusing to replace it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # replaces a link planted after the check, never writes through it
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str, root: str | Path, encoding: str = "utf-8") -> Path:
    return write_bytes(path, text.encode(encoding), root)


def write_json(path: str | Path, obj: Any, root: str | Path, **dumps: Any) -> Path:
    return write_text(path, json.dumps(obj, **dumps), root)


def open_append(path: str | Path, root: str | Path):
    """``open(path, "a")`` for a log that grows line by line (no rename possible): never through a link
    (``O_NOFOLLOW`` closes the race after the check), and only a regular file."""
    path = Path(path)
    make_dirs(path.parent, root)
    check_inside(path, root)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise UnsafePathError(f"{path} cannot be opened for appending ({e.strerror}); refusing to write "
                              f"there") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file; refusing to write there")
    return os.fdopen(fd, "a", encoding="utf-8")


def write_tree(directory: str | Path, root: str | Path, write: Callable[[Path], Any]) -> Path:
    """Run ``write(stage)`` (a library writer that fills a folder: ``save_pretrained``, ``save_to_disk``) in a new
    folder beside ``directory``, then move what it wrote into ``directory``: a new ``directory`` is renamed into
    place whole; into an existing one each file is moved with ``os.replace`` (which replaces a planted link instead
    of writing through it), after the same checks as ``write_bytes``."""
    directory = Path(directory)
    if directory == Path(root):  # the folder is the root: its parent is the user's, where only the stage goes
        directory.parent.mkdir(parents=True, exist_ok=True)
    else:
        make_dirs(directory.parent, root)
    check_inside(directory, root)
    stage = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        write(stage)
        if not directory.exists():
            os.replace(stage, directory)
            return directory
        if not directory.is_dir():
            raise UnsafePathError(f"{directory} exists and is not a folder; refusing to replace it")
        for src in sorted(stage.rglob("*")):
            dst = directory / src.relative_to(stage)
            check_inside(dst, root)
            if src.is_dir():
                if dst.exists() and not dst.is_dir():
                    raise UnsafePathError(f"{dst} exists and is not a folder; refusing to replace it")
                dst.mkdir(exist_ok=True)
            elif dst.is_dir() and not dst.is_symlink():
                raise UnsafePathError(f"{dst} is a folder; refusing to replace it with a file")
            else:
                os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return directory


def check_regular(path: str | Path, what: str = "file") -> Path:
    """Refuse to read ``path`` unless it is a regular file (a link to one is fine): a device, FIFO or socket
    would hang or never end."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UnsafePathError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise UnsafePathError(f"{what} {path} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UnsafePathError(f"{what} {path} is not a regular file (a device, FIFO, socket or folder); "
                              f"refusing to read it")
    return path


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
