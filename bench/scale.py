"""Cost of every stage from MovieLens size to a million-item catalog, on a synthetic catalog with learnable order.

The catalog (``make_catalog``): item texts from a vocabulary (topic words, shared filler, a code), Zipf
popularity, and user sequences that follow each item's fixed successor in its topic 60% of the time (else a
popular item of the same topic, else any popular item), so a sequence model has real order to learn and quality
is measurable. Users scale with the catalog (items / 2, at most ``--max-users``).

Stages, each in a fresh process (its peak RSS is the stage's peak memory, the data included):
  prepare   ``translrec prepare`` of the catalog (task sequential, streaming shards): interactions/s
  stream    the streamed training loader over the prepared windows (no model): windows/s
  encode    frozen catalog encoding with a tiny BERT (2 layers, hidden 64) through ``encode_texts``, 1 and 2 ranks
            (gloo); at most ``--encode-cap`` items, timed per item (the cost is linear by construction): items/s
  step      one optimizer step (forward, backward, AdamW) of the ID-only SASRec row, ``loss: full`` and
            ``loss: sampled`` (256 popularity negatives, logQ), batch 128 windows of 50: ms/step
  eval      full-ranking evaluation (``evaluate_sequences``: every user's target against every item) of
            ``--eval-users`` users: users/s
  index     exact and faiss (``build_vector_index``: the type chosen by size) over clustered unit vectors
            (dim 64): build s, ms/query at batch 1, recall@10 against exact

The exponent of a stage is the slope of log(seconds per unit) against log(items): 0 means its per-unit cost does
not grow with the catalog, 1 that it grows linearly. A 10M row is projected from the fit (marked ``proj``).

    python bench/scale.py                      # 10k, 100k, 1M items (long: run it in the background)
    python bench/scale.py --sizes 10000 100000 --stages step index
    python bench/scale.py --quick              # 2k and 5k items, small counts: a test-sized run
    python bench/scale.py --interleave sampled --sizes 10000 1000000 --steps 3   # step time ratio, one process
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "stream", "encode", "encode2", "step_full", "step_sampled", "eval", "index_exact",
          "index_faiss")
UNITS = {"prepare": "rows", "stream": "windows", "encode": "items", "encode2": "items", "step_full": "steps",
         "step_sampled": "steps", "eval": "users", "index_exact": "queries", "index_faiss": "queries"}
SYLLABLES = "ka lo mi nu pe ra si to vu ze ba de fi go hu ja ke li mo na".split()


# ------------------------------------------------------------------------------------------------- the catalog

def make_catalog(num_items: int, num_users: int, out: Path, seed: int = 0) -> dict:
    """interactions.parquet and items.parquet in ``out`` (the ``interactions`` format); returns counts."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    vocab = np.array(sorted({"".join(rng.choice(SYLLABLES, size=3)) for _ in range(6000)}))
    topics = max(8, num_items // 200)
    topic_of = rng.integers(0, topics, size=num_items)
    topic_words = rng.choice(vocab, size=(topics, 6))
    popularity = 1.0 / np.arange(1, num_items + 1) ** 1.05  # Zipf over a random order of the items
    popularity = popularity[rng.permutation(num_items)]
    popularity /= popularity.sum()
    # A fixed successor per item inside its topic: the order a sequence model can learn.
    successor = np.empty(num_items, dtype=np.int64)
    members = [np.flatnonzero(topic_of == t) for t in range(topics)]
    for m in members:  # one cycle through each topic's items
        cycle = rng.permutation(m)
        successor[cycle] = np.roll(cycle, -1)
    lengths = rng.integers(6, 20, size=num_users)
    total = int(lengths.sum())
    items = np.empty(total, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    items[starts] = rng.choice(num_items, size=num_users, p=popularity)
    global_draws = rng.choice(num_items, size=total, p=popularity)
    u = rng.random(total)
    pos_in_user = np.arange(total) - np.repeat(starts, lengths)
    for step in range(1, int(lengths.max())):  # vectorized over users: position ``step`` of every sequence
        idx = starts[lengths > step] + step
        prev = items[idx - 1]
        same_topic = members_pick(members, topic_of[prev], rng)
        items[idx] = np.where(u[idx] < 0.6, successor[prev], np.where(u[idx] < 0.8, same_topic, global_draws[idx]))
    users = np.repeat(np.arange(num_users), lengths)
    inter = pd.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str),
                          "timestamp": pos_in_user.astype(np.int64) + 1})
    words = rng.choice(vocab, size=(num_items, 3))
    titles = [f"{' '.join(topic_words[t, :3])} {' '.join(w)} n{i}"
              for i, (t, w) in enumerate(zip(topic_of, words, strict=True))]
    out.mkdir(parents=True, exist_ok=True)
    inter.to_parquet(out / "interactions.parquet", index=False)
    pd.DataFrame({"item_id": np.arange(num_items).astype(str), "title": titles}).to_parquet(out / "items.parquet",
                                                                                            index=False)
    return {"items": num_items, "users": num_users, "interactions": total}


def members_pick(members: list[np.ndarray], topic: np.ndarray, rng) -> np.ndarray:
    """One member of each row's topic (uniform)."""
    sizes = np.array([len(members[t]) for t in topic])
    offsets = (rng.random(len(topic)) * sizes).astype(np.int64)
    return np.array([members[t][o] for t, o in zip(topic, offsets, strict=True)], dtype=np.int64)


def config_overrides(data_dir: Path, run_dir: Path, max_history: int = 50) -> list[str]:
    return [f"output_dir={run_dir}", "task=sequential", "data.format=interactions", f"data.path={data_dir}",
            "data.item_text=\"{title}\"", "data.streaming=true", f"data.max_history={max_history}",
            "model.sequence.item_repr=id", "model.sequence.encoder=frozen", "train.progress_bar=false",
            "eval.every_steps=null"]


# ----------------------------------------------------------------------------------------------------- stages

def stage_prepare(ctx: dict) -> tuple[float, float]:
    from translrec_dist.cli import main

    start = time.perf_counter()
    rc = main(["prepare", str(REPO / "configs" / "tiny_cpu.yaml"), *ctx["overrides"]])
    assert rc == 0, rc
    return time.perf_counter() - start, ctx["interactions"]


def prepared(ctx: dict):
    from translrec_dist.config.loader import load_config
    from translrec_dist.tasks.registry import get_task

    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", ctx["overrides"])
    from translrec_dist.data.sequence_shards import load_prepared_windows

    task = get_task("sequential")
    return cfg, load_prepared_windows(cfg, True, lambda: task.prepare_texts(cfg), task.prepare_inputs(cfg))


def stage_stream(ctx: dict) -> tuple[float, float]:
    import torch

    from translrec_dist.data.loader import train_loader
    from translrec_dist.tasks.sequential import WindowCollator

    cfg, (data, train, _tok) = prepared(ctx)
    collate = WindowCollator(torch.as_tensor(data.popularity, dtype=torch.float64).float(), 256, 0)
    limit = ctx["stream_windows"]
    start, n = time.perf_counter(), 0
    for batch in train_loader(train, collate, micro=128, accum=1, rank=0, world=1, seed=0, epoch=0):
        n += len(batch["windows"])
        if n >= limit:
            break
    return time.perf_counter() - start, n


def model_for(ctx: dict, loss: str, num_items: int):
    from translrec_dist.config.schema import SequenceConfig
    from translrec_dist.models.sequential.model import SequenceModel

    cfg = SequenceConfig(item_repr="id", hidden=64, heads=2, inner=256, layers=2, loss=loss, num_negatives=256)
    return SequenceModel(cfg, num_items, 50)


def stage_step(ctx: dict, loss: str) -> tuple[float, float]:
    import torch

    n = ctx["items"]
    torch.manual_seed(0)
    model = model_for(ctx, loss, n).train()
    model.set_popularity(torch.as_tensor(np.bincount(np.minimum(np.random.default_rng(0).zipf(1.3, 100_000), n) - 1,
                                                     minlength=n) + 1).float())  # every item trained
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    windows = torch.randint(0, n, (128, 51))
    times = []
    for i in range(ctx["steps"] + 1):
        start = time.perf_counter()
        model(windows).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 1:  # the first step allocates the optimizer state
            times.append(time.perf_counter() - start)
    return float(np.median(times)) * len(times), len(times)


def stage_eval(ctx: dict) -> tuple[float, float]:
    import torch

    from translrec_dist.tasks.sequential import evaluate_sequences

    cfg, (data, _train, _tok) = prepared(ctx)
    data.evals["test"] = data.evals["test"].head(ctx["eval_users"])
    torch.manual_seed(0)
    model = model_for(ctx, "full", data.num_items).eval()
    start = time.perf_counter()
    evaluate_sequences(model, data, "test", 50, 256)
    return time.perf_counter() - start, len(data.evals["test"])


def tiny_encoder(texts: list[str]):
    import torch
    from transformers import BertConfig, BertModel

    from translrec_dist.data.tokenize import train_wordpiece

    tokenizer = train_wordpiece(iter(texts[:20_000]), 2000, 32)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=128, max_position_embeddings=64)).eval()
    return model, tokenizer


def catalog_texts(ctx: dict) -> list[str]:
    import pandas as pd

    titles = pd.read_parquet(Path(ctx["data_dir"]) / "items.parquet")["title"].tolist()
    return titles[: ctx["encode_cap"]]


def stage_encode(ctx: dict) -> tuple[float, float]:
    from translrec_dist.models.encoding import encode_texts, pooled_forward

    texts = catalog_texts(ctx)
    model, tokenizer = tiny_encoder(texts)
    start = time.perf_counter()
    encode_texts(pooled_forward(model, "mean"), texts, tokenizer, 32, batch_size=256)
    return time.perf_counter() - start, len(texts)


def encode_rank(rank: int, ctx: dict, port: int, result: Path) -> None:
    import torch
    import torch.distributed as dist

    from translrec_dist.models.encoding import encode_texts, pooled_forward

    torch.set_num_threads(max(1, torch.get_num_threads() // 2))  # the package's share of each of 2 local ranks
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    texts = catalog_texts(ctx)
    model, tokenizer = tiny_encoder(texts)
    dist.barrier()
    start = time.perf_counter()
    encode_texts(pooled_forward(model, "mean"), texts, tokenizer, 32, batch_size=256, rank=rank, world=2)
    elapsed = time.perf_counter() - start
    if rank == 0:
        result.write_text(json.dumps(elapsed))
    dist.destroy_process_group()


def stage_encode2(ctx: dict) -> tuple[float, float]:
    import torch.multiprocessing as mp

    result = Path(ctx["work"]) / "encode2.json"
    mp.spawn(encode_rank, args=(ctx, 29000 + os.getpid() % 1000, result), nprocs=2)
    return json.loads(result.read_text()), len(catalog_texts(ctx))


def clustered_vectors(n: int, dim: int, seed: int):
    import torch

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 500), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), size=n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return torch.nn.functional.normalize(torch.from_numpy(x), dim=1)


def stage_index(ctx: dict, backend: str) -> tuple[float, float]:
    import torch

    from translrec_dist.serving.vector_index import build_vector_index

    torch.set_num_threads(1)  # batch-1 queries: latency of one thread, as a server worker would run them
    vectors = clustered_vectors(ctx["items"], 64, 0)
    queries = clustered_vectors(ctx["queries"], 64, 1)
    start = time.perf_counter()
    index = build_vector_index(backend, vectors)
    ctx["extra"]["build_s"] = time.perf_counter() - start
    exact = build_vector_index("exact", vectors) if backend != "exact" else index
    truth = exact.search(queries, 10)[1]
    times, hits = [], 0
    for q in range(len(queries)):
        t = time.perf_counter()
        rows = index.search(queries[q:q + 1], 10)[1]
        times.append(time.perf_counter() - t)
        hits += len(set(rows[0].tolist()) & set(truth[q].tolist()))
    ctx["extra"]["recall@10"] = hits / (10 * len(queries))
    ctx["extra"]["kind"] = type(getattr(index, "index", index)).__name__
    return float(np.sum(times)), len(queries)


def interleaved_steps(sizes: list[int], loss: str, rounds: int) -> None:
    """Step time of ``loss`` at each catalog size, the sizes' steps alternating in one process so that a drifting
    background load hits them alike; prints the median and each size's ratio to the smallest."""
    import torch

    from translrec_dist.threads import configure_threads

    configure_threads()
    setups = []
    for n in sizes:
        torch.manual_seed(0)
        model = model_for({}, loss, n).train()
        model.set_popularity(torch.as_tensor(np.bincount(np.minimum(np.random.default_rng(0).zipf(1.3, 100_000), n)
                                                         - 1, minlength=n) + 1).float())
        setups.append((n, model, torch.optim.AdamW(model.parameters(), lr=1e-3), torch.randint(0, n, (128, 51))))
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for r in range(rounds + 1):  # round 0 allocates the optimizer states
        for n, model, opt, windows in setups:
            start = time.perf_counter()
            model(windows).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if r:
                times[n].append(time.perf_counter() - start)
    base = float(np.median(times[sizes[0]]))
    for n in sizes:
        med = float(np.median(times[n]))
        print(f"step_{loss} {n:>9d} median {med:.2f} s ({', '.join(f'{t:.1f}' for t in times[n])}) "
              f"x{med / base:.2f} of {sizes[0]}; load {os.getloadavg()[0]:.1f}")


RUNNERS = {"prepare": stage_prepare, "stream": stage_stream, "encode": stage_encode, "encode2": stage_encode2,
           "step_full": lambda c: stage_step(c, "full"), "step_sampled": lambda c: stage_step(c, "sampled"),
           "eval": stage_eval, "index_exact": lambda c: stage_index(c, "exact"),
           "index_faiss": lambda c: stage_index(c, "faiss")}


def child(stage: str, ctx_file: str) -> None:
    from translrec_dist.threads import configure_threads

    plan = configure_threads()  # the package's thread policy (before torch loads), as ``translrec`` runs it
    ctx = json.loads(Path(ctx_file).read_text())
    ctx["extra"] = {"threads": plan.threads if plan else os.environ.get("OMP_NUM_THREADS", "default")}
    seconds, units = RUNNERS[stage](ctx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "units": units, "peak_mib": peak, **ctx["extra"]}))


# ------------------------------------------------------------------------------------------------------ driver

def run_stage(stage: str, ctx: dict, work: Path) -> dict:
    ctx_file = work / f"ctx-{stage}.json"
    ctx_file.write_text(json.dumps(ctx))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, __file__, "--child", stage, str(ctx_file)], capture_output=True,
                          text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} at {ctx['items']} items failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if stage == "encode2":  # the children's memory: the parent only spawned them
        result["peak_mib"] = max(result["peak_mib"],
                                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return result


def fit_exponent(sizes: list[int], per_unit: list[float]) -> tuple[float, float]:
    """(slope, intercept) of log(per-unit seconds) against log(items)."""
    if len(sizes) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(sizes), np.log(per_unit), 1)
    return float(slope), float(intercept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--max-users", type=int, default=100_000)
    p.add_argument("--eval-users", type=int, default=2000)
    p.add_argument("--encode-cap", type=int, default=50_000, help="items encoded at most (per-item cost)")
    p.add_argument("--stream-windows", type=int, default=50_000)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--project", type=int, default=10_000_000, help="catalog size of the projected row (0: none)")
    p.add_argument("--work", help="keep the catalogs and runs here (default: a temporary directory)")
    p.add_argument("--quick", action="store_true", help="2k and 5k items, small counts (for tests)")
    p.add_argument("--interleave", choices=["full", "sampled"], help="only the training step of this loss, the "
                   "sizes alternating in one process (--steps rounds): the ratio to the smallest size")
    p.add_argument("--merge", nargs="+", metavar="LOG", help="print one table from the stderr logs of earlier runs "
                   "(e.g. stages or sizes run apart) instead of measuring")
    args = p.parse_args()
    if args.child:
        return child(*args.child)
    if args.merge:
        return report(merged_rows(args.merge), args)
    if args.interleave:
        return interleaved_steps(args.sizes, args.interleave, args.steps)
    if args.quick:
        args.sizes, args.eval_users, args.encode_cap, args.stream_windows = [2000, 5000], 200, 2000, 2000
        args.steps, args.queries, args.project = 2, 50, 0
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = Path(args.work or tmp)
        rows: dict[str, dict[int, dict]] = {s: {} for s in args.stages}
        for n in args.sizes:
            users = min(n // 2, args.max_users)
            data_dir = work / f"catalog-{n}"
            start = time.perf_counter()
            counts = make_catalog(n, users, data_dir)
            print(f"# {n} items, {users} users, {counts['interactions']} interactions generated in "
                  f"{time.perf_counter() - start:.1f} s; load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
            ctx = {**counts, "data_dir": str(data_dir), "work": str(work), "eval_users": args.eval_users,
                   "encode_cap": args.encode_cap, "stream_windows": args.stream_windows, "steps": args.steps,
                   "queries": args.queries, "overrides": config_overrides(data_dir, work / f"run-{n}")}
            for stage in args.stages:
                load = os.getloadavg()[0]
                r = rows[stage][n] = {**run_stage(stage, ctx, work), "load": load}
                print(f"# {stage:12s} {n:>9d}: {r}", file=sys.stderr, flush=True)
        report(rows, args)


def merged_rows(logs: list[str]) -> dict[str, dict[int, dict]]:
    """The per-stage lines (``# stage items: {...}``) of earlier runs' stderr; a later line replaces an earlier."""
    import ast

    rows: dict[str, dict[int, dict]] = {}
    for log in logs:
        for line in Path(log).read_text().splitlines():
            head, _, body = line.partition(": {")
            parts = head.split()
            if len(parts) == 3 and parts[0] == "#" and parts[1] in STAGES and parts[2].isdigit():
                rows.setdefault(parts[1], {})[int(parts[2])] = ast.literal_eval("{" + body)
    return {s: rows[s] for s in STAGES if s in rows}


def report(rows: dict, args) -> None:
    print(f"{os.cpu_count()} CPUs; per unit = seconds / units; exponent = slope of log(per unit) vs log(items)")
    print(f"{'stage':13s} {'unit':8s} {'items':>9s} {'units/s':>11s} {'ms/unit':>9s} {'peak MiB':>9s} {'load':>5s}  "
          f"extra")
    for stage, by_size in rows.items():
        sizes = sorted(by_size)
        per_unit = [by_size[n]["seconds"] / by_size[n]["units"] for n in sizes]
        for n, pu in zip(sizes, per_unit, strict=True):
            r = by_size[n]
            extra = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                             if k not in ("seconds", "units", "peak_mib", "load"))
            print(f"{stage:13s} {UNITS[stage]:8s} {n:>9d} {1 / pu:11.1f} {1000 * pu:9.3f} {r['peak_mib']:9.0f} "
                  f"{r['load']:5.1f}  {extra}")
        slope, intercept = fit_exponent(sizes, per_unit)
        if args.project and not math.isnan(slope):
            proj = math.exp(intercept + slope * math.log(args.project))
            print(f"{stage:13s} {UNITS[stage]:8s} {args.project:>9d} {1 / proj:11.1f} {1000 * proj:9.3f} "
                  f"{'':>9s} {'':>5s}  proj")
        print(f"{stage:13s} exponent {slope:.2f}")


if __name__ == "__main__":
    main()
