"""``translrec report RUN_DIR``: curves from the run's metrics log as PNGs, plus a short text summary."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path

from translrec_dist import safe_io
from translrec_dist.errors import DataError
from translrec_dist.run_dir import RunDir

PANELS = [("loss", "training loss"), ("lr", "learning rate"), ("samples_per_s", "samples / s"),
          ("tokens_per_s", "tokens / s")]


def read_metrics(run_dir: Path) -> list[dict]:
    path = RunDir(run_dir).metrics
    if not path.is_file():
        raise DataError(f"{path} not found: pass the output_dir of a translrec run")
    safe_io.check_regular(path, "metrics log")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {n}: not JSON ({e.msg})") from None
    if not records:
        raise DataError(f"{path} is empty: the run logged no step yet")
    return records


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def eval_keys(records: list[dict]) -> list[str]:
    keys = {k for r in records for k in r if k.startswith(("valid/", "eval/")) and k.split("/")[1] != "num_examples"}
    return sorted(keys)


def make_report(run_dir: str | Path, out_dir: str | Path | None = None) -> tuple[list[Path], str]:
    try:
        import matplotlib
    except ImportError:
        raise DataError("translrec report needs matplotlib: pip install 'translrec-dist[plots]'") from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)  # before anything is created: a wrong RUN_DIR leaves nothing behind
    out = Path(out_dir) if out_dir else RunDir(run_dir).report
    root = out if out_dir else run_dir  # no link on the way from here, and nothing written outside it
    safe_io.make_dirs(out, root)
    written = []

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (key, title) in zip(axes.flat, PANELS, strict=True):
        x, y = series(records, key)
        ax.plot(x, y, lw=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"training: {run_dir}")
    fig.tight_layout()
    _save_png(fig, out / "training.png", root)
    written.append(out / "training.png")

    keys = eval_keys(records)
    if keys:
        fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            x, y = series(records, key)
            ax.plot(x, y, marker="o", lw=1.2)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        _save_png(fig, out / "eval.png", root)
        written.append(out / "eval.png")

    summary = summarize(run_dir, records)
    safe_io.write_text(out / "summary.txt", summary + "\n", root)
    written.append(out / "summary.txt")
    return written, summary


def _save_png(fig, path: Path, root: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    safe_io.write_bytes(path, buffer.getvalue(), root)


def summarize(run_dir: Path, records: list[dict]) -> str:
    steps, loss = series(records, "loss")
    _, sps = series(records, "samples_per_s")
    _, tps = series(records, "tokens_per_s")
    lines = [f"run: {run_dir}"]
    if steps:
        k = max(1, len(loss) // 10)
        first, last = statistics.fmean(loss[:k]), statistics.fmean(loss[-k:])
        lines.append(f"steps logged: {steps[0]}..{steps[-1]} ({len(steps)} points)")
        lines.append(f"loss: {first:.4f} (first {k} logs) -> {last:.4f} (last {k}), best {min(loss):.4f}")
        lines.append(f"throughput: median {statistics.median(sps):.1f} samples/s, "
                     f"{statistics.median(tps):.0f} tokens/s")
    eval_file = RunDir(run_dir).eval
    if eval_file.is_file():
        ev = json.loads(eval_file.read_text())
        flat = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in ev.items()
                         if not isinstance(v, dict))
        lines.append(f"{eval_file.name}: {flat}")
    return "\n".join(lines)
