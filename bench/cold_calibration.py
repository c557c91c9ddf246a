"""Pick ``model.sequence.cold_scale`` for a trained text+ID run with a distilled cold head (``distill`` > 0):
the scale of the cold items' vectors that gives the best validation NDCG@10 (masked, all items), then the test
figures at that scale, beside scale 1 (as trained) and 0 (cold items' vectors zero: scores of 0).

    python bench/cold_calibration.py runs/cold42_distill/text_id_distill --scales 0,0.5,0.7,0.8,0.9,1

Evaluation only (no training): reads RUN/config.yaml and the export RUN/final.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from translrec_dist.config.loader import load_config
from translrec_dist.run_dir import RunDir
from translrec_dist.tasks.sequential import SequentialTask, evaluate_sequences, read_sequence_data

KEYS = ("ndcg@10_masked", "warm_ndcg@10_masked", "cold_ndcg@10_masked")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--scales", default="0,0.5,0.6,0.7,0.8,0.9,1")
    args = p.parse_args()
    torch.set_num_threads(1)
    run = RunDir(args.run)
    cfg = load_config(str(run.config))
    model = SequentialTask().read_export(run.final, cfg).eval()
    if model.items.cold is None:
        raise SystemExit(f"{args.run} has no cold head: train it with model.sequence.distill > 0")
    data = read_sequence_data(cfg)
    rows = {}
    for scale in map(float, args.scales.split(",")):
        model.items.cold_scale = scale
        rows[scale] = {split: {k: round(evaluate_sequences(model, data, split, cfg.data.max_history)[k], 4)
                               for k in KEYS} for split in ("valid", "test")}
        print(json.dumps({"scale": scale, **rows[scale]}), flush=True)
    best = max(rows, key=lambda s: rows[s]["valid"]["ndcg@10_masked"])
    test = rows[best]["test"]
    summary = {"chosen_on_valid": best, "test": test,
               "cold_over_warm": round(test["cold_ndcg@10_masked"] / max(test["warm_ndcg@10_masked"], 1e-9), 3)}
    print(json.dumps(summary))
    (Path(args.run) / "cold_calibration.json").write_text(json.dumps({"rows": rows, **summary}, indent=2))


if __name__ == "__main__":
    main()
