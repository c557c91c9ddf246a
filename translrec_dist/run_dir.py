"""The layout of a run directory (``output_dir``): the one place that names its files.

Everything that reads or writes a run's files asks a ``RunDir`` for the path; nothing else spells a name.
This module imports nothing from the package, so every layer (data, models, training, benches, tests,
``translrec run-status`` for the SLURM scripts) can use it::

    OUTPUT_DIR/
      .translrec-run          the marker: written when a run starts; only a marked directory is ever cleared
      config.yaml             the validated config of the run (written once the config and data are checked)
      metrics.jsonl           one JSON record per log/validation/eval line
      eval.json               final metrics (test at the top level, other splits nested)
      memory.json             per-rank memory after the first optimizer step
      STOP                    created by a user or a job script: checkpoint and exit at the next step
      tracker_run.json        the experiment tracker's run id (a resumed or requeued job continues that run)
      tensorboard/<id>/       TensorBoard logs (train.report_to=[tensorboard])
      tokenizer/              the vocabulary trained for a tiny model (shared by the ranks)
      tokenized/<split>/      map-style splits tokenized by the main process, loaded by the others
      item_vectors/           task=sequential: the catalog's encoder vectors, cached per encoder and catalog
      layer_states/           task=sequential, encoder top_layers|lora: token states after the frozen layers
      prepared/<key>/         ``translrec prepare`` shards (default data.cache_dir)
      example_ids/rank<R>.txt streamed example ids per rank (data.record_example_ids)
      logs/rank<R>.log        every log line of a rank, with the library messages kept off the terminal
      checkpoints/step_N/     complete checkpoints (``checkpoint_files.json``, then ``trainer_state.json`` last)
      checkpoints/best/       the state with the best validation metric
      checkpoints/step_N.universal/  a ZeRO step_N re-partitionable for another number of processes
      final/                  the export (a plain Hugging Face directory + translrec.yaml)
      report/                 ``translrec report`` plots
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = ".translrec-run"  # a directory without it is the user's: translrec deletes nothing there
STATE_FILE = "trainer_state.json"  # inside every checkpoint directory, written last
FILES_MANIFEST = "checkpoint_files.json"  # inside every checkpoint: size and SHA-256 of each file, checked at resume
_STEP_DIR = re.compile(r"^step_(\d+)$")
_CHECKPOINT_NAME = re.compile(r"^(step_\d+|best)(\.universal)?(\.tmp)?$")


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    # ---- files
    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    @property
    def memory(self) -> Path:
        return self.root / "memory.json"

    @property
    def tracker_run(self) -> Path:
        return self.root / "tracker_run.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def stop(self) -> Path:
        return self.root / "STOP"

    # ---- directories
    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    def tokenized(self, split: str) -> Path:
        return self.root / "tokenized" / split

    @property
    def item_vectors(self) -> Path:
        return self.root / "item_vectors"

    @property
    def layer_states(self) -> Path:
        return self.root / "layer_states"

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def example_ids(self) -> Path:
        return self.root / "example_ids"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step}"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def log_file(self, rank: int) -> Path:
        return self.root / "logs" / f"rank{rank}.log"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def final_tmp(self) -> Path:
        return self.root / "final.tmp"  # the export while it is written; renamed to final/ when complete

    # ---- what a fresh start removes
    def results(self) -> list[Path]:
        """What a run writes while it trains and when it ends: stale as soon as another run starts here, even one
        that keeps the checkpoints (``resume_from=auto`` finding none intact)."""
        return [self.config, self.metrics, self.eval, self.memory, self.stop, self.example_ids, self.final,
                self.final_tmp, self.report]

    def outputs(self) -> list[Path]:
        """Everything a run writes here: ``train.overwrite=true`` removes exactly these, never another file."""
        return [*self.results(), self.checkpoints, self.tokenizer, self.root / "tokenized", self.item_vectors,
                self.layer_states, self.prepared, self.root / "logs"]

    def names(self) -> set[str]:
        """Every top-level name the layout knows (an earlier run's directory holds nothing else)."""
        return {p.relative_to(self.root).parts[0] for p in self.outputs()} | {
            self.tracker_run.name, self.tensorboard.name, MARKER}

    @staticmethod
    def is_checkpoint_name(name: str) -> bool:
        """``step_N``, its ``.tmp`` and ``.universal`` forms, and ``best``: all ``checkpoints/`` ever holds."""
        return _CHECKPOINT_NAME.match(name) is not None

    # ---- checkpoints
    @staticmethod
    def state_file(checkpoint: str | Path) -> Path:
        return Path(checkpoint) / STATE_FILE

    @staticmethod
    def universal(checkpoint: str | Path) -> Path:
        """``step_N.universal``: a ZeRO ``step_N`` converted for another number of processes (never resumed
        from by ``auto`` itself; removed with its ``step_N``)."""
        return Path(checkpoint).with_name(Path(checkpoint).name + ".universal")

    @staticmethod
    def is_complete(checkpoint: str | Path) -> bool:
        return RunDir.state_file(checkpoint).is_file()

    def complete_checkpoints(self) -> list[Path]:
        """Complete ``step_N`` checkpoints, oldest first (``.tmp`` and half-written ones are never listed)."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir()
                 if (m := _STEP_DIR.match(p.name)) and self.is_complete(p)]
        return [p for _, p in sorted(found)]

    @staticmethod
    def of_checkpoint(checkpoint: str | Path) -> RunDir:
        """The run a ``RUN/checkpoints/step_N`` directory belongs to."""
        return RunDir(Path(checkpoint).parent.parent)

    def status(self) -> dict:
        """What a job script needs: the last complete checkpoint and whether the run finished."""
        done = self.complete_checkpoints()
        state = json.loads(self.state_file(done[-1]).read_text()) if done else {}
        step = int(state.get("step", 0))
        total = state.get("total_steps")
        return {"run_dir": str(self.root), "last_checkpoint": str(done[-1]) if done else None, "step": step,
                "total_steps": total, "finished": total is not None and step >= int(total),
                "exported": self.final.is_dir()}
