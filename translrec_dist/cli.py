"""``translrec`` command line. Exit codes: 0 ok, 2 bad config or input, 1 other failures."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from translrec_dist.errors import UserError
from translrec_dist.run_dir import RunDir

log = logging.getLogger("translrec_dist")
# Only the user turns on code execution: an export's or checkpoint's own config never does.
TRUST_FLAG = ("--trust-remote-code",)
TRUST_HELP = {"action": "store_true", "help": "allow Python code shipped with the model (auto_map) to run"}


def setup_logging(debug: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if debug else (logging.INFO if rank == 0 else logging.WARNING)
    logging.basicConfig(level=level, format=f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("datasets", "transformers", "accelerate", "DeepSpeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not debug else logging.INFO)


def cmd_train(args) -> int:
    from translrec_dist.program import load_run
    from translrec_dist.training.trainer import train

    cfg, task = load_run(args.config, args.overrides)
    result = train(cfg, task)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result.summary()))
    return 0


def cmd_prepare(args) -> int:
    from translrec_dist.data.prepare import prepare, read_manifest
    from translrec_dist.program import load_run
    from translrec_dist.training.preflight import preflight

    cfg, task = load_run(args.config, args.overrides)
    preflight(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    directory = prepare(cfg, force=args.force, texts=lambda: task.prepare_texts(cfg),
                        key_inputs=task.prepare_inputs(cfg))
    manifest = read_manifest(directory)
    summary = {"prepared": str(directory),
               **{f"{name}_examples": s["examples"] for name, s in manifest["splits"].items()},
               "train_shards": len(manifest["splits"]["train"]["shards"]),
               "bad_rows": manifest["report"].get("bad_rows", {}), "tokenizer": manifest["tokenizer"]["name"]}
    print(json.dumps(summary))
    return 0


def cmd_evaluate(args) -> int:
    from translrec_dist.program import evaluate_export, load_run

    cfg, _ = load_run(args.config, args.overrides)
    model_dir = Path(args.model) if args.model else RunDir(cfg.output_dir).final
    metrics = evaluate_export(cfg, model_dir, args.split)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_predict(args) -> int:
    from translrec_dist.program import predict_file

    predict_file(args.model, args.input, args.output, args.batch_size, args.trust_remote_code)
    return 0


def cmd_config_get(args) -> int:
    """Print one value of a validated config, e.g. ``output_dir`` for the sbatch scripts. A job script calls
    this on every start, so it stays light: the schema's checks only (no torch; the task's own checks run when
    the job's command starts)."""
    from translrec_dist.config.loader import load_config

    node = load_config(args.config, args.overrides).to_dict()
    for part in args.key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"config-get: no key {args.key!r} in {args.config}; e.g. output_dir or train.max_steps")
        node = node[part]
    print("" if node is None else json.dumps(node) if isinstance(node, (dict, list)) else node)
    return 0


def cmd_check_master(args) -> int:
    from translrec_dist.training.rendezvous import wait_for_master

    waited = wait_for_master(args.addr, args.port, args.timeout)
    print(f"rendezvous master {args.addr}:{args.port} reachable after {waited:.1f} s", file=sys.stderr)
    return 0


def cmd_configs(args) -> int:
    from translrec_dist.training.builtin_configs import write_configs

    written = write_configs(args.out, force=args.force)
    for path in written:
        print(path)
    print(f"wrote {len(written)} files; e.g. accelerate launch --config_file {Path(args.out) / 'accelerate'}/"
          f"multi_gpu_zero2.yaml ..., or train.deepspeed_config={Path(args.out) / 'deepspeed'}/zero2.json",
          file=sys.stderr)
    return 0


def cmd_synth(args) -> int:
    from translrec_dist.config.schema import SyntheticConfig
    from translrec_dist.data.synthetic import generate_synthetic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = SyntheticConfig(num_users=args.users, num_items=args.items, seed=args.seed)
    inter, items = generate_synthetic(cfg)
    inter.to_csv(out / "interactions.csv", index=False)
    items.to_csv(out / "items.csv", index=False)
    print(f"wrote {len(inter)} interactions and {len(items)} items to {out} "
          f"(use: data.format=interactions data.path={out})")
    return 0


def cmd_report(args) -> int:
    from translrec_dist.evaluation.report import make_report

    written, summary = make_report(args.run_dir, args.out)
    print(summary)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_export(args) -> int:
    from translrec_dist.program import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, args.trust_remote_code)
    print(f"wrote {out} (load it with model.init_from={out}, translrec evaluate --model {out} or predict)")
    return 0


def cmd_run_status(args) -> int:
    """Where a run stands, for job scripts: the last complete checkpoint, whether it finished, its STOP file."""
    run = RunDir(args.run_dir)
    status = {**run.status(), "stop_file": str(run.stop)}
    if args.field is None:
        print(json.dumps(status))
        return 0
    value = status[args.field]
    print("" if value is None else int(value) if isinstance(value, bool) else value)
    return 0


def cmd_plan(args) -> int:
    from translrec_dist.program import load_run
    from translrec_dist.training.planner import format_plan, parse_bytes

    cfg, task = load_run(args.config, args.overrides)
    print(format_plan(cfg, args.gpus_per_node, args.nodes, parse_bytes(args.gpu_mem), task))
    return 0


def cmd_index(args) -> int:
    from translrec_dist.program import load_recommender
    from translrec_dist.serving.recommender import read_new_items

    rec = load_recommender(args.model, index=False, trust_remote_code=args.trust_remote_code)
    rec.set_index_options(args.backend, args.histories)  # index.backend / index.histories overrides
    rec.build_index(read_new_items(args.items) if args.items else None)
    out = rec.save_index(Path(args.out) if args.out else None)
    print(json.dumps({"index": str(out), "items": len(rec.item_ids), "dim": int(rec.embeddings.shape[1])}))
    return 0


def cmd_recommend(args) -> int:
    from translrec_dist.program import load_recommender

    rec = load_recommender(args.model, index=False, trust_remote_code=args.trust_remote_code)
    rec.load_index(Path(args.index) if args.index else None)
    result = rec.recommend(user=args.user, history=args.history, top_k=args.top_k, exclude_seen=args.exclude_seen)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def cmd_explain(args) -> int:
    from translrec_dist.program import load_recommender

    rec = load_recommender(args.model, trust_remote_code=args.trust_remote_code)
    print(json.dumps(rec.explain(args.user, args.item), indent=2, ensure_ascii=False))
    return 0


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_config(args) -> int:
    from translrec_dist.program import load_run
    from translrec_dist.training.dry_run import describe_run

    print(describe_run(load_run(args.config, args.overrides)[0], args.nproc, args.cpu))
    return 0


def cmd_serve(args) -> int:
    from translrec_dist.program import load_recommender
    from translrec_dist.serving.http import Limits, serve

    rec = load_recommender(args.model, index=False, trust_remote_code=args.trust_remote_code)
    rec.load_index(Path(args.index) if args.index else None)
    serve(rec, args.host, args.port, args.max_batch, args.max_wait_ms,
          Limits(args.max_body_bytes, args.max_item_chars, args.max_history))
    return 0


def add_ecosystem_commands(sub) -> None:
    cf = sub.add_parser("config", help="print the resolved config, world size, global batch and DeepSpeed JSON "
                                       "(runs nothing)")
    cf.add_argument("config")
    cf.add_argument("overrides", nargs="*")
    cf.add_argument("--nproc", type=int, help="total processes (default: WORLD_SIZE, the SLURM job, or 1)")
    cf.add_argument("--cpu", action="store_true", help="as a CPU run would resolve it (fp32)")
    cf.set_defaults(func=cmd_config)

    sv = sub.add_parser("serve", help="serve a retrieval or sequential export over HTTP (/recommend, /explain, "
                                      "/healthz)")
    sv.add_argument("--model", required=True, help="export directory of a task that recommends (RUN/final)")
    sv.add_argument("--index", help="index directory (default: MODEL/index; built on the fly if missing)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-batch", type=int, default=64, help="most /recommend requests answered in one pass")
    sv.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to join")
    sv.add_argument("--max-body-bytes", type=positive_int, default=1 << 20, help="larger bodies get 413")
    sv.add_argument("--max-item-chars", type=positive_int, default=5000,
                    help="longest history item, user or item id in characters (longer: 422)")
    sv.add_argument("--max-history", type=positive_int, default=200, help="most history items per request (422)")
    sv.add_argument(*TRUST_FLAG, **TRUST_HELP)
    sv.set_defaults(func=cmd_serve)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("translrec-dist")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from translrec_dist import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="translrec", description="Fine-tune pretrained encoders into recommenders.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train from a YAML config")
    t.add_argument("config")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-5 data.max_length=64")
    t.set_defaults(func=cmd_train)

    pp = sub.add_parser("prepare", help="read the source, build examples, write tokenized shards + manifest")
    pp.add_argument("config")
    pp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.num_shards=16")
    pp.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    pp.set_defaults(func=cmd_prepare)

    e = sub.add_parser("evaluate", help="evaluate an export on the config's data")
    e.add_argument("config")
    e.add_argument("overrides", nargs="*")
    e.add_argument("--model", help="export directory (default: OUTPUT_DIR/final)")
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="score rows of a CSV/Parquet/JSONL file with an export")
    pr.add_argument("--model", required=True, help="export directory (RUN/final)")
    pr.add_argument("--input", required=True, help="rows with text[,text_pair] or user_id,item_id columns")
    pr.add_argument("--output", help="JSONL output file (default: stdout)")
    pr.add_argument("--batch-size", type=positive_int, default=64)
    pr.add_argument(*TRUST_FLAG, **TRUST_HELP)
    pr.set_defaults(func=cmd_predict)

    c = sub.add_parser("config-get", help="print one value of a validated config (e.g. output_dir)")
    c.add_argument("config")
    c.add_argument("key", help="dotted key, e.g. output_dir or train.max_steps")
    c.add_argument("overrides", nargs="*")
    c.set_defaults(func=cmd_config_get)

    m = sub.add_parser("check-master", help="wait until the rendezvous master accepts TCP (multi-node pre-flight)")
    m.add_argument("addr")
    m.add_argument("port", type=int)
    m.add_argument("--timeout", type=float, default=120.0, help="seconds to keep trying (default 120)")
    m.set_defaults(func=cmd_check_master)
    ix = sub.add_parser("index", help="encode the item catalog of an export that recommends (DIR/index)")
    ix.add_argument("--model", required=True, help="export directory of a task that recommends (RUN/final)")
    ix.add_argument("--items", help="extra or new items (item_id + text columns), indexed from their text alone")
    ix.add_argument("--out", help="index directory (default: MODEL/index)")
    ix.add_argument(*TRUST_FLAG, **TRUST_HELP)
    ix.add_argument("--backend", choices=["exact", "faiss"], help="search structure (default: the export's "
                                                                 "index.backend, exact)")
    ix.add_argument("--histories", action=argparse.BooleanOptionalAction, default=None,
                    help="keep known users' histories in the index (default: index.histories, true)")
    ix.set_defaults(func=cmd_index)

    rc = sub.add_parser("recommend", help="top-K items for a user id or a history of item texts (JSON)")
    rc.add_argument("--model", required=True, help="export directory of a task that recommends (RUN/final)")
    who = rc.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the model's data")
    who.add_argument("--history", nargs="+", help="item texts the user interacted with, newest first")
    rc.add_argument("--top-k", type=positive_int, default=10)
    rc.add_argument("--exclude-seen", action="store_true", help="leave the user's own items out")
    rc.add_argument("--index", help="index directory (default: MODEL/index; built on the fly if missing)")
    rc.add_argument(*TRUST_FLAG, **TRUST_HELP)
    rc.set_defaults(func=cmd_recommend)

    ex = sub.add_parser("explain", help="rank a user's history items by how much each one supports an item")
    ex.add_argument("--model", required=True, help="export directory of a task that recommends (RUN/final)")
    ex.add_argument("--user", required=True)
    ex.add_argument("--item", required=True)
    ex.add_argument(*TRUST_FLAG, **TRUST_HELP)
    ex.set_defaults(func=cmd_explain)

    cf = sub.add_parser("configs", help="write the packaged DeepSpeed JSONs and accelerate YAMLs for editing")
    cf.add_argument("--out", required=True, help="directory; files go to OUT/deepspeed/ and OUT/accelerate/")
    cf.add_argument("--force", action="store_true", help="overwrite files that already exist")
    cf.set_defaults(func=cmd_configs)

    s = sub.add_parser("synth", help="write the built-in synthetic dataset as files")
    s.add_argument("--out", required=True)
    s.add_argument("--users", type=int, default=600)
    s.add_argument("--items", type=int, default=300)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth)

    r = sub.add_parser("report", help="plot loss, lr, throughput and eval metrics of a run (PNG + summary)")
    r.add_argument("run_dir")
    r.add_argument("--out", help="output directory (default: RUN_DIR/report)")
    r.set_defaults(func=cmd_report)

    x = sub.add_parser("export", help="consolidate a checkpoint (DDP or ZeRO-1/2/3) into the final/ export format")
    x.add_argument("checkpoint", help="RUN/checkpoints/step_N")
    x.add_argument("out", help="output directory")
    x.add_argument(*TRUST_FLAG, **TRUST_HELP)
    x.set_defaults(func=cmd_export)

    rs = sub.add_parser("run-status", help="the last complete checkpoint of a run and whether it finished (JSON)")
    rs.add_argument("run_dir")
    rs.add_argument("--field", choices=["last_checkpoint", "step", "total_steps", "finished", "exported", "stop_file"],
                    help="print this one value (booleans as 0/1, none as an empty line) instead of the JSON")
    rs.set_defaults(func=cmd_run_status)

    pl = sub.add_parser("plan", help="per-GPU memory of DDP/ZeRO-1/2/3 (+offload) and the cheapest that fits")
    pl.add_argument("config")
    pl.add_argument("overrides", nargs="*")
    pl.add_argument("--gpus-per-node", type=int, default=1)
    pl.add_argument("--nodes", type=int, default=1)
    pl.add_argument("--gpu-mem", default="80GB", help="memory of one GPU, e.g. 80GB, 40GiB")
    pl.set_defaults(func=cmd_plan)
    add_ecosystem_commands(sub)  # ecosystem: config, serve
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    try:
        rc = args.func(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"translrec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("translrec: interrupted", file=sys.stderr)
        return 130
    if rc == 0 and "torch.distributed" in sys.modules:  # a command run under a launcher leaves its group cleanly
        from translrec_dist.training.distributed import shutdown_process_group

        shutdown_process_group()
    return rc


if __name__ == "__main__":
    sys.exit(main())
