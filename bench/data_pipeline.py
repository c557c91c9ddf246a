"""Data pipeline throughput: prepare's tokenization vs the per-row loop and raw ``encode_batch``, the
streaming loader at world size 1 and 2, and the share of a tiny-model training step spent waiting for data.

    python bench/data_pipeline.py                      # MovieLens-100k from the recbole wheel, else synthetic
    python bench/data_pipeline.py --source synthetic --steps 100

Targets (issue 4): prepare end to end (tokenize + write shards) >= 0.8x raw encode_batch; data wait < 2%
of step time on the tiny config. Figures depend on the machine and its load: compare within one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from translrec_dist.config.loader import load_config  # noqa: E402


def make_config(source: str, work: Path, extra: list[str]):
    over = [f"output_dir={work / 'run'}", "train.overwrite=true",
            f"data.cache_dir={work / 'cache'}", "data.num_shards=8",
            "data.streaming=true", "train.progress_bar=false"]
    if source == "ml100k":
        spec = importlib.util.find_spec("recbole")
        if spec is None:
            raise SystemExit("recbole is not installed: pip install --no-deps recbole==1.2.1, or --source synthetic")
        path = Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k"
        over += ["data.format=recbole", f"data.path={path}",
                 "data.item_text='{movie_title} ({release_year}). Genres: {class}'"]
    else:
        over += ["data.synthetic.num_users=6000", "data.synthetic.num_items=2000"]
    return load_config(REPO / "configs" / "tiny_cpu.yaml", over + extra)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def tokenization(cfg, work: Path, repeat: int, rows: int) -> list[tuple]:
    from translrec_dist.data.prepare import write_shards
    from translrec_dist.data.stages import build_tokenizer, load_text_splits
    from translrec_dist.data.tokenize import tokenize_frame

    texts = load_text_splits(cfg)
    tok = build_tokenizer(cfg, texts)
    df = texts.frames["train"].iloc[:rows]
    a, b, n, max_len = df["text"].tolist(), df["text_pair"].tolist(), len(df), cfg.data.max_length
    backend = tok.backend_tokenizer
    backend.enable_truncation(max_len)
    raw_ids: list = []

    def raw():
        raw_ids[:] = [e.ids for e in backend.encode_batch(list(zip(a, b, strict=True)))]

    def per_row():  # the seed's loop: df['text'].apply(tokenizer.encode), here on the pair
        df.apply(lambda r: tok.encode(r["text"], r["text_pair"], truncation=True, max_length=max_len), axis=1)

    def prepare_stage():
        out = work / "bench_shards"
        shutil.rmtree(out, ignore_errors=True)
        write_shards(tokenize_frame(df, tok, max_len), out, cfg.data.num_shards, progress=False)

    raw()
    tokens = sum(map(len, raw_ids))
    # Alternate raw / prepare / per-row and compare within a round: on a shared machine the load moves
    # between rounds more than between neighbouring measurements.
    rounds = [(timed(raw), timed(prepare_stage), timed(per_row)) for _ in range(repeat)]
    t_raw, t_prep, t_row = (statistics.median(r[i] for r in rounds) for i in range(3))
    prep_ratio = statistics.median(r[0] / r[1] for r in rounds)
    row_ratio = statistics.median(r[0] / r[2] for r in rounds)
    return [("per-row tokenizer.encode (seed)", n / t_row, tokens / t_row, row_ratio),
            ("raw tokenizers encode_batch", n / t_raw, tokens / t_raw, 1.0),
            ("prepare: datasets.map + write shards", n / t_prep, tokens / t_prep, prep_ratio)]


def _read_rank(args) -> tuple[int, int, float]:
    cfg, rank, world = args
    from translrec_dist.data.collate import PadCollator
    from translrec_dist.data.loader import train_loader
    from translrec_dist.data.prepared import load_prepared_splits

    train = load_prepared_splits(cfg, is_main=True).splits["train"]
    start, n, tokens = time.perf_counter(), 0, 0
    for batch in train_loader(train, PadCollator(0), micro=cfg.train.micro_batch_size, accum=1, rank=rank,
                              world=world, seed=cfg.seed, epoch=0):
        n += len(batch["labels"])
        tokens += int(batch["attention_mask"].sum())
    return n, tokens, time.perf_counter() - start


def loader_rates(cfg) -> list[tuple]:
    rows = []
    ctx = mp.get_context("spawn")
    for world in (1, 2):
        with ctx.Pool(world) as pool:
            results = pool.map(_read_rank, [(cfg, r, world) for r in range(world)])
        wall = max(r[2] for r in results)
        n, tokens = sum(r[0] for r in results), sum(r[1] for r in results)
        rows.append((f"streaming loader, world size {world} (all ranks)", n / wall, tokens / wall, None))
    return rows


def data_wait(cfg, steps: int) -> tuple[float, float, float]:
    """Train the tiny model on streamed batches in this process; time spent in next(loader) vs whole steps."""
    import torch

    from translrec_dist.data.collate import PadCollator
    from translrec_dist.data.loader import train_loader
    from translrec_dist.data.prepared import load_prepared_splits
    from translrec_dist.models.pointwise.cross_encoder import build_model

    prepared = load_prepared_splits(cfg, is_main=True)
    torch.manual_seed(0)
    model = build_model(cfg, prepared.tokenizer, None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = train_loader(prepared.splits["train"], PadCollator(prepared.tokenizer.pad_token_id),
                           micro=cfg.train.micro_batch_size, accum=1, rank=0, world=1, seed=cfg.seed, epoch=0)
    it = iter(batches)
    waiting = total = 0.0
    for step in range(steps + 5):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        logits = model(**batch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if step >= 5:  # warm-up steps excluded
            waiting += t1 - t0
            total += t2 - t0
    return waiting / total, 1000 * total / steps, 1000 * waiting / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", choices=["ml100k", "synthetic"], default="ml100k")
    p.add_argument("--steps", type=int, default=100, help="training steps for the data-wait measurement")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the tokenizer comparison (median)")
    p.add_argument("--rows", type=int, default=50_000, help="train examples in the tokenizer comparison")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.micro_batch_size=64")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="translrec-bench-"))
    try:
        cfg = make_config(args.source, work, args.overrides)
        from translrec_dist.data.prepare import prepare, read_manifest

        start = time.perf_counter()
        manifest = read_manifest(prepare(cfg))
        wall = time.perf_counter() - start
        n = sum(s["examples"] for s in manifest["splits"].values())
        tokens = sum(s["tokens"] for s in manifest["splits"].values())
        t = manifest["timings"]
        rows = [("translrec prepare, whole command", n / wall, tokens / wall, None)]
        rows += tokenization(cfg, work, args.repeat, args.rows)
        rows += loader_rates(cfg)
        frac, step_ms, wait_ms = data_wait(cfg, args.steps)

        print(f"\nsource: {args.source}, {n} examples ({manifest['splits']['train']['examples']} train), "
              f"{tokens} tokens, max_length {cfg.data.max_length}, micro-batch {cfg.train.micro_batch_size}")
        print(f"prepare stages (s): read+examples {t['read_and_examples_s']}, tokenizer {t['tokenizer_s']}, "
              f"tokenize+write {t['tokenize_and_write_s']}; whole command {wall:.1f}\n")
        print(f"tokenizer comparison on the first {min(args.rows, manifest['splits']['train']['examples'])} train "
              f"examples, median of {args.repeat} rounds; TOKENIZERS_PARALLELISM as set in the environment\n")
        print(f"{'stage':<46}{'examples/s':>12}{'tokens/s':>14}{'vs raw':>9}")
        for name, ex, tok, ratio in rows:
            print(f"{name:<46}{ex:>12,.0f}{tok:>14,.0f}{'' if ratio is None else f'{ratio:>8.2f}x':>9}")
        print(f"\ntiny model, {args.steps} steps: {step_ms:.1f} ms/step, {wait_ms:.2f} ms waiting for data = "
              f"{100 * frac:.2f}% of step time (target < 2%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
