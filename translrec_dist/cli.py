"""``translrec`` command line. Exit codes: 0 ok, 2 bad config or input, 1 other failures."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from translrec_dist import safe_io
from translrec_dist.console import setup_logging, stdout_to_stderr
from translrec_dist.errors import ConfigError, UserError
from translrec_dist.run_dir import RunDir
from translrec_dist.threads import configure_threads

log = logging.getLogger("translrec_dist")
# Only the user turns on code execution: an export's or checkpoint's own config never does.
TRUST_FLAG = ("--trust-remote-code",)
TRUST_HELP = {"action": "store_true", "help": "allow Python code shipped with the model (auto_map) to run"}


def cmd_train(args) -> int:
    from translrec_dist.program import load_run
    from translrec_dist.training.trainer import train

    cfg, task = load_run(args.config, args.overrides)
    with stdout_to_stderr():  # stdout is the result alone (DeepSpeed prints its op builds there)
        result = train(cfg, task)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result.summary()))
    return 0


def cmd_prepare(args) -> int:
    from translrec_dist.data.prepare import prepare, read_manifest
    from translrec_dist.program import load_run
    from translrec_dist.training.output_dir import prepare_in_run_dir
    from translrec_dist.training.preflight import preflight

    cfg, task = load_run(args.config, args.overrides)
    preflight(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    directory = prepare_in_run_dir(cfg, lambda: prepare(cfg, force=args.force, texts=lambda: task.prepare_texts(cfg),
                                                        key_inputs=task.prepare_inputs(cfg)))
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
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder (created if missing) for interactions.csv and "
                          f"items.csv")
    cfg = SyntheticConfig(num_users=args.users, num_items=args.items, seed=args.seed)
    inter, items = generate_synthetic(cfg)
    for name, table in (("interactions.csv", inter), ("items.csv", items)):  # never through a link planted there
        safe_io.write_text(out / name, table.to_csv(index=False), out)
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


def cmd_keys(args) -> int:
    from translrec_dist.config.keys import config_keys, format_markdown, format_text

    keys = config_keys()
    print(format_markdown(keys) if args.markdown else format_text(keys))
    return 0


def cmd_serve(args) -> int:
    from translrec_dist.program import load_recommender
    from translrec_dist.serving.http import Limits, serve

    rec = load_recommender(args.model, index=False, trust_remote_code=args.trust_remote_code)
    rec.load_index(Path(args.index) if args.index else None)
    serve(rec, args.host, args.port, args.max_batch, args.max_wait_ms,
          Limits(args.max_body_bytes, args.max_item_chars, args.max_history))
    return 0


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("translrec-dist")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from translrec_dist import __version__

        return __version__


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help (unless it names its own, or there is none to show: an unset option or
    a flag); descriptions and examples kept as written."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# Commands that job scripts call (slurm/, launch/); listed apart from the user commands in --help.
PLUMBING = {
    "config-get": "print one value of a validated config (job scripts read output_dir with it)",
    "check-master": "wait until the rendezvous master accepts TCP (multi-node pre-flight)",
    "run-status": "the last complete checkpoint of a run and whether it finished (JSON or one field)",
}
RECOMMENDING_EXPORT = "an export that recommends (task retrieval or sequential: RUN/final)"


def command(sub, name: str, summary: str, examples: list[str], func) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary (in ``translrec --help``), description and examples."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    listed = {} if name in PLUMBING else {"help": summary}  # without help= argparse leaves it out of the list
    parser = sub.add_parser(name, **listed, description=summary[0].upper() + summary[1:] + ".", epilog=epilog,
                            formatter_class=HelpFormatter)
    parser.set_defaults(func=func)
    return parser


def config_arguments(parser: argparse.ArgumentParser, example: str = "train.lr=3e-5 data.max_length=64") -> None:
    parser.add_argument("config", help="YAML run config, e.g. configs/tiny_cpu.yaml")
    parser.add_argument("overrides", nargs="*", help=f"dotted KEY=VALUE overrides (values parsed as YAML), e.g. "
                                                     f"{example}; `translrec keys` lists every key")


def build_parser() -> argparse.ArgumentParser:
    plumbing = "\n".join(f"  {name:<14}{text}" for name, text in PLUMBING.items())
    p = argparse.ArgumentParser(
        prog="translrec", formatter_class=HelpFormatter,
        description="Fine-tune pretrained encoders into recommenders (ctr, rating, retrieval, sequential, mlm).",
        epilog=f"plumbing commands (for job scripts):\n{plumbing}\n\n"
               "`translrec COMMAND --help` shows a command's options, defaults and examples.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    t = command(sub, "train", "train, evaluate and export a run from a YAML config",
                ["translrec train configs/tiny_cpu.yaml",
                 "translrec train configs/tiny_cpu.yaml task=retrieval train.max_steps=200 output_dir=runs/r",
                 "accelerate launch --num_processes 2 -m translrec_dist train configs/tiny_cpu.yaml"], cmd_train)
    config_arguments(t)

    pp = command(sub, "prepare", "read the source, build examples, write tokenized shards and a manifest",
                 ["translrec prepare configs/tiny_cpu.yaml data.num_shards=16"], cmd_prepare)
    config_arguments(pp, "data.num_shards=16")
    pp.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")

    e = command(sub, "evaluate", "evaluate an export on the config's data (JSON metrics)",
                ["translrec evaluate configs/tiny_cpu.yaml --split valid",
                 "translrec evaluate configs/tiny_cpu.yaml --model runs/other/final"], cmd_evaluate)
    config_arguments(e)
    e.add_argument("--model", help="export directory (default: OUTPUT_DIR/final)")
    e.add_argument("--split", default="test", choices=["valid", "test"], help="split to evaluate")

    pr = command(sub, "predict", "score rows of a CSV/Parquet/JSONL file with a ctr or rating export (JSON lines)",
                 ["translrec predict --model runs/tiny_cpu/final --input rows.csv --output scores.jsonl"],
                 cmd_predict)
    pr.add_argument("--model", required=True, help="export directory (RUN/final)")
    pr.add_argument("--input", required=True, help="rows with text[,text_pair] or user_id,item_id columns")
    pr.add_argument("--output", help="JSONL output file (default: stdout)")
    pr.add_argument("--batch-size", type=positive_int, default=64, help="rows per forward pass")
    pr.add_argument(*TRUST_FLAG, **TRUST_HELP)

    ix = command(sub, "index", "encode the item catalog of an export that recommends (written to MODEL/index)",
                 ["translrec index --model runs/retrieval/final",
                  "translrec index --model runs/retrieval/final --items new_items.csv --backend faiss"], cmd_index)
    ix.add_argument("--model", required=True, help=RECOMMENDING_EXPORT)
    ix.add_argument("--items", help="extra or new items (item_id + text columns), indexed from their text alone")
    ix.add_argument("--out", help="index directory (default: MODEL/index)")
    ix.add_argument(*TRUST_FLAG, **TRUST_HELP)
    ix.add_argument("--backend", choices=["exact", "faiss"], help="search structure (default: the export's "
                                                                 "index.backend, exact)")
    ix.add_argument("--histories", action=argparse.BooleanOptionalAction, default=None,
                    help="keep known users' histories in the index (default: index.histories, true)")

    rc = command(sub, "recommend", "top-K items for a user id or a history of item texts (JSON)",
                 ["translrec recommend --model runs/retrieval/final --user 42 --top-k 5 --exclude-seen",
                  'translrec recommend --model runs/sequential/final --history "Heat" "Casino"'], cmd_recommend)
    rc.add_argument("--model", required=True, help=RECOMMENDING_EXPORT)
    who = rc.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the model's data")
    who.add_argument("--history", nargs="+", help="item texts (or ids) the user interacted with, newest first")
    rc.add_argument("--top-k", type=positive_int, default=10, help="how many items")
    rc.add_argument("--exclude-seen", action="store_true", help="leave the user's own items out")
    rc.add_argument("--index", help="index directory (default: MODEL/index; built on the fly if missing)")
    rc.add_argument(*TRUST_FLAG, **TRUST_HELP)

    ex = command(sub, "explain", "rank a user's history items by how much each one supports an item (JSON)",
                 ["translrec explain --model runs/retrieval/final --user 42 --item 17"], cmd_explain)
    ex.add_argument("--model", required=True, help=RECOMMENDING_EXPORT)
    ex.add_argument("--user", required=True, help="a user id of the model's data")
    ex.add_argument("--item", required=True, help="the item id to explain")
    ex.add_argument(*TRUST_FLAG, **TRUST_HELP)

    sv = command(sub, "serve", "serve an export that recommends over HTTP (/recommend, /explain, /healthz)",
                 ["translrec serve --model runs/retrieval/final --port 8000"], cmd_serve)
    sv.add_argument("--model", required=True, help=RECOMMENDING_EXPORT)
    sv.add_argument("--index", help="index directory (default: MODEL/index; built on the fly if missing)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8000, help="TCP port")
    sv.add_argument("--max-batch", type=int, default=64, help="most /recommend requests answered in one pass")
    sv.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to join")
    sv.add_argument("--max-body-bytes", type=positive_int, default=1 << 20, help="larger bodies get 413")
    sv.add_argument("--max-item-chars", type=positive_int, default=5000,
                    help="longest history item, user or item id in characters (longer: 422)")
    sv.add_argument("--max-history", type=positive_int, default=200, help="most history items per request (422)")
    sv.add_argument(*TRUST_FLAG, **TRUST_HELP)

    x = command(sub, "export", "consolidate a checkpoint (DDP or ZeRO-1/2/3) into the final/ export format",
                ["translrec export runs/tiny_cpu/checkpoints/step_200 runs/tiny_cpu/step200_export"], cmd_export)
    x.add_argument("checkpoint", help="RUN/checkpoints/step_N")
    x.add_argument("out", help="output directory")
    x.add_argument(*TRUST_FLAG, **TRUST_HELP)

    r = command(sub, "report", "plot loss, lr, throughput and eval metrics of a run (PNG + summary)",
                ["translrec report runs/tiny_cpu"], cmd_report)
    r.add_argument("run_dir", help="the run's output_dir")
    r.add_argument("--out", help="output directory (default: RUN_DIR/report)")

    cf = command(sub, "config", "print the resolved config, world size, global batch and DeepSpeed JSON "
                                "(runs nothing)",
                 ["translrec config configs/tiny_cpu.yaml train.distributed=zero2 --nproc 8"], cmd_config)
    config_arguments(cf)
    cf.add_argument("--nproc", type=int, help="total processes (default: WORLD_SIZE, the SLURM job, or 1)")
    cf.add_argument("--cpu", action="store_true", help="as a CPU run would resolve it (fp32)")

    k = command(sub, "keys", "list every config key with its type, default and description",
                ["translrec keys", "translrec keys | grep train.", "translrec keys --markdown"], cmd_keys)
    k.add_argument("--markdown", action="store_true", help="a markdown table (README's)")

    pl = command(sub, "plan", "per-GPU memory of DDP/ZeRO-1/2/3 (+offload) and the cheapest that fits",
                 ["translrec plan configs/bert_base_ctr.yaml --gpus-per-node 8 --nodes 2 --gpu-mem 40GiB"], cmd_plan)
    config_arguments(pl)
    pl.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per node")
    pl.add_argument("--nodes", type=int, default=1, help="nodes")
    pl.add_argument("--gpu-mem", default="80GB", help="memory of one GPU, e.g. 80GB, 40GiB")

    cs = command(sub, "configs", "write the packaged DeepSpeed JSONs and accelerate YAMLs for editing",
                 ["translrec configs --out my_configs"], cmd_configs)
    cs.add_argument("--out", required=True, help="directory; files go to OUT/deepspeed/ and OUT/accelerate/")
    cs.add_argument("--force", action="store_true", help="overwrite files that already exist")

    s = command(sub, "synth", "write the built-in synthetic dataset as files",
                ["translrec synth --out data/synthetic --users 1000"], cmd_synth)
    s.add_argument("--out", required=True, help="directory for interactions and items")
    s.add_argument("--users", type=int, default=600, help="number of users")
    s.add_argument("--items", type=int, default=300, help="number of items")
    s.add_argument("--seed", type=int, default=0, help="generator seed")

    c = command(sub, "config-get", PLUMBING["config-get"],
                ["translrec config-get configs/tiny_cpu.yaml output_dir"], cmd_config_get)
    c.add_argument("config", help="YAML run config")
    c.add_argument("key", help="dotted key, e.g. output_dir or train.max_steps")
    c.add_argument("overrides", nargs="*", help="dotted KEY=VALUE overrides")

    m = command(sub, "check-master", PLUMBING["check-master"], ["translrec check-master node001 29500"],
                cmd_check_master)
    m.add_argument("addr", help="master host")
    m.add_argument("port", type=int, help="master port")
    m.add_argument("--timeout", type=float, default=120.0, help="seconds to keep trying")

    rs = command(sub, "run-status", PLUMBING["run-status"], ["translrec run-status runs/tiny_cpu --field finished"],
                 cmd_run_status)
    rs.add_argument("run_dir", help="the run's output_dir")
    rs.add_argument("--field", choices=["last_checkpoint", "step", "total_steps", "finished", "exported", "stop_file"],
                    help="print this one value (booleans as 0/1, none as an empty line) instead of the JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    configure_threads()  # before any command imports torch: OpenMP reads its settings once, at start
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
    except BrokenPipeError:  # `translrec keys | head`: the reader left; nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    if rc == 0 and "torch.distributed" in sys.modules:  # a command run under a launcher leaves its group cleanly
        from translrec_dist.training.distributed import shutdown_process_group

        shutdown_process_group()
    return rc


if __name__ == "__main__":
    sys.exit(main())
