"""Run under ``accelerate launch`` with 2 CPU processes: the frozen catalog encoding of the sequential task split
across the ranks (each encodes its share, the shares are gathered), then read back from the cache it wrote.
Rank 0 saves both next to the same catalog encoded by one process alone."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

import translrec_dist.models.encoding as encoding
from translrec_dist.config.loader import load_config
from translrec_dist.data.sequences import build_sequence_data
from translrec_dist.data.stages import read_source
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.base import DataContext
from translrec_dist.tasks.sequential import item_text_vectors
from translrec_dist.training.distributed import shutdown_process_group

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_cpu.yaml"


ROWS = [0]  # real (non-padding) rows this process encoded


def counting(encode):
    def wrapper(*args, **kwargs):
        positions, vectors = encode(*args, **kwargs)
        ROWS[0] += int((positions >= 0).sum())
        return positions, vectors
    return wrapper


def main(out: str) -> None:
    encoding.encode_tokenized = counting(encoding.encode_tokenized)
    accelerator = Accelerator()
    work = Path(out).parent
    cfg = load_config(CONFIG, [f"output_dir={work / 'run'}", "task=sequential", "model.sequence.item_repr=text",
                               "data.synthetic.num_users=60", "data.synthetic.num_items=83",
                               "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64", "data.max_length=40"])
    data = build_sequence_data(*read_source(cfg), cfg)
    run = RunDir(cfg.output_dir)
    ctx = DataContext(run, accelerator.is_main_process, accelerator.num_processes, False,
                      accelerator.wait_for_everyone)
    split = item_text_vectors(cfg, data, run.item_vectors, ctx)  # nothing cached: both ranks encode
    accelerator.wait_for_everyone()
    cached = item_text_vectors(cfg, data, run.item_vectors, ctx)  # the cache rank 0 wrote
    files = sorted(p.name for p in run.item_vectors.iterdir())
    rows_encoded = torch.tensor(ROWS[0])
    if accelerator.is_main_process:
        alone = item_text_vectors(cfg, data, work / "alone")  # one process, the whole catalog
        save_file({"split": split, "cached": cached, "alone": alone,
                   "cache_files": torch.tensor(len(files)),
                   "rows_encoded": rows_encoded}, out)
    else:
        save_file({"split": split, "rows_encoded": rows_encoded}, str(Path(out).with_suffix(".rank1")))
    shutdown_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
