"""The DeepSpeed JSONs and accelerate YAMLs that ship inside the package (``translrec_dist/resources/``).

They are read with ``importlib.resources``, so a wheel installed anywhere finds them; the repository's
``configs/deepspeed`` and ``configs/accelerate`` are links to the same files. ``translrec configs --out DIR``
writes copies for editing.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from translrec_dist import safe_io
from translrec_dist.errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

KINDS = {"deepspeed": ".json", "accelerate": ".yaml"}
# How the shipped accelerate YAMLs name their DeepSpeed JSON: relative to a checkout of the repository.
REPO_DEEPSPEED_PREFIX = "configs/deepspeed/"


def builtin_dir(kind: str) -> Traversable:
    return files("translrec_dist") / "resources" / kind


def builtin_configs(kind: str) -> dict[str, Traversable]:
    """File name -> packaged file, for ``deepspeed`` or ``accelerate``."""
    return {f.name: f for f in sorted(builtin_dir(kind).iterdir(), key=lambda f: f.name)
            if f.name.endswith(KINDS[kind])}


def packaged_deepspeed(named: str) -> Traversable | None:
    """The packaged JSON a shipped accelerate YAML means by ``configs/deepspeed/NAME`` when no such file exists
    where it was launched (an installed wheel, another working directory); None for any other path."""
    if not named.startswith(REPO_DEEPSPEED_PREFIX) or Path(named).exists():
        return None
    return builtin_configs("deepspeed").get(named[len(REPO_DEEPSPEED_PREFIX):])


def write_configs(out: str | Path, force: bool = False) -> list[Path]:
    """Copies of every packaged config under ``OUT/deepspeed`` and ``OUT/accelerate``. The accelerate YAMLs then
    name the copied JSONs by absolute path, so an edit of ``OUT/deepspeed/zero2.json`` is what they use."""
    out = Path(out).resolve()
    planned = {out / kind / name: f for kind in KINDS for name, f in builtin_configs(kind).items()}
    existing = [str(p) for p in planned if p.exists()]
    if existing and not force:
        raise UserError(f"{len(existing)} file(s) already exist, e.g. {existing[0]}; pass --force to overwrite them "
                        f"or choose another --out")
    for path, source in planned.items():
        text = source.read_text(encoding="utf-8")
        if path.suffix == ".yaml":
            text = text.replace(REPO_DEEPSPEED_PREFIX, f"{out / 'deepspeed'}/")
        safe_io.write_text(path, text, out)  # never through a link planted in --out
    return list(planned)
