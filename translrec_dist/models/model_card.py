"""The model card (``final/README.md``): what the export is, what it was trained on, how well, how to load it.

Built with ``huggingface_hub``'s ``ModelCard``/``ModelCardData`` so that the hub and ``ModelCard.load`` read its
front matter: ``base_model`` (a hub id, never a local path), ``datasets``, ``license``, ``pipeline_tag``,
``library_name`` and the evaluation as a ``model-index``. The card carries no absolute path: a path stays in the
run's own files (``translrec.yaml``, the run directory).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from translrec_dist import safe_io
from translrec_dist.config.loader import export_config
from translrec_dist.config.schema import RunConfig
from translrec_dist.models.pretrained import hub_id
from translrec_dist.models.source import model_source
from translrec_dist.run_dir import RunDir

# What other tools read in an export, from what the task's ``write_interop`` wrote (its ``loads``):
# (key in loads, library_name, pipeline_tag). The first key present decides; none: only translrec reads it.
HUB_SHAPES = (("sentence_transformers", "sentence-transformers", "sentence-similarity"),
              ("sequence_classification", "transformers", "text-classification"),
              ("masked_lm", "transformers", "fill-mask"))
# metrics of a subset of the targets (cold-start items, warm items): in the card's table, not its model-index
SUBSET_PREFIXES = ("cold_", "warm_")
# config keys that hold a path: shown relative (their last part) in the card
PATH_KEYS = (("output_dir",), ("data", "path"), ("data", "cache_dir"), ("model", "init_from"),
             ("train", "deepspeed_config"), ("train", "resume_from"))
# config parts that only some tasks read: left out of other tasks' cards
TASK_ONLY = {("model", "sequence"): {"sequential"}, ("index",): {"retrieval", "sequential"},
             ("model", "similarity"): {"retrieval"}, ("model", "temperature"): {"retrieval"},
             ("model", "share_towers"): {"retrieval"}, ("model", "item_id_embeddings"): {"retrieval"},
             ("train", "mlm_probability"): {"mlm"}, ("train", "gather_negatives"): {"retrieval", "sequential"}}


def base_model_id(cfg: RunConfig) -> str | None:
    """The hub id the encoder started from; None for a tiny random-init BERT or a local directory that is not a
    copy of a hub model. ``model.init_from``: the base model of that export (read from its ``translrec.yaml``)."""
    kind, where = model_source(cfg)
    if kind == "tiny":
        return None
    if kind == "export":
        parent = Path(where) / "translrec.yaml"
        try:
            raw = yaml.safe_load(safe_io.check_regular(parent, "export config").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, safe_io.UnsafePathError):
            return None
        return hub_id((raw.get("model") or {}).get("name_or_path"))
    return hub_id(where)


def describe_base(cfg: RunConfig, base: str | None) -> str:
    m = cfg.model
    if m.tiny is not None and not m.init_from:
        return (f"tiny BERT, random init ({m.tiny.num_hidden_layers} layers, hidden {m.tiny.hidden_size}), "
                f"WordPiece vocabulary trained on the data")
    if m.name_or_path is None and not m.init_from:
        return "none (the ID-only sequence model reads no text)"
    name = (f"[{base}](https://huggingface.co/{base})" if base
            else "a local encoder (not a hub model; path not recorded)")
    if m.init_from:
        return f"continued from a translrec export of {name}"
    return f"{name}{' (architecture only, random init)' if m.random_init else ''}"


def base_license(cfg: RunConfig) -> str | None:
    """The license in the base model's own card, when it is on this machine."""
    kind, where = model_source(cfg)
    if kind != "pretrained" or where is None or not (Path(where) / "README.md").is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(Path(where) / "README.md").data.license
    except Exception:  # a card we cannot parse has no license we can repeat
        return None


def dataset_name(cfg: RunConfig) -> str:
    d = cfg.data
    if d.format == "synthetic":
        return "synthetic"
    if d.format == "recbole" and d.path is None:
        return "ml-100k"
    return Path(d.path).name


def data_fingerprint(cfg: RunConfig) -> dict:
    """sha256 of the data config plus blake2b of every source file (the same inputs ``translrec prepare`` hashes).
    Source files are named relative to the data path."""
    from translrec_dist.data.prepare import READ_TIME_KEYS, cache_root, fingerprint, source_files

    data = {k: v for k, v in cfg.data.model_dump().items() if k not in READ_TIME_KEYS}
    memo_path = cache_root(cfg) / "fingerprints.json"  # hashes prepare already computed; read-only here
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    try:
        files = source_files(cfg)
        sources = [fingerprint(f, memo) for f in files]
    except OSError:  # the export outlived its data: the config hash alone
        files, sources = [], []
    digest = hashlib.sha256(json.dumps([cfg.task, cfg.seed, data, sources], sort_keys=True, default=str).encode())
    for f, s in zip(files, sources, strict=True):
        s["path"] = f.name
    return {"fingerprint": digest.hexdigest()[:16], "format": cfg.data.format, "name": dataset_name(cfg),
            "sources": sources}


def read_eval(path: Path) -> dict[str, dict]:
    """eval.json as {split: {metric: value}} (its top level is the test split)."""
    if not path.is_file():
        return {}
    results = json.loads(path.read_text())
    rows = {"test": {k: v for k, v in results.items() if not isinstance(v, dict)}}
    rows.update({k: v for k, v in results.items() if isinstance(v, dict)})
    return {split: metrics for split, metrics in rows.items() if metrics}


def is_metric(name: str, value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not name.startswith("num_")


def eval_table(results: dict[str, dict]) -> str:
    if not results:
        return "No evaluation was written for this run (eval.json missing)."
    lines = ["| split | metric | value |", "| --- | --- | --- |"]
    for split, metrics in results.items():
        for k, v in metrics.items():
            lines.append(f"| {split} | {k} | {v:.4f} |" if isinstance(v, float) else f"| {split} | {k} | {v} |")
    return "\n".join(lines)


def eval_results(cfg: RunConfig, results: dict[str, dict], pipeline_tag: str | None):
    from huggingface_hub import EvalResult

    name = dataset_name(cfg)
    return [EvalResult(task_type=pipeline_tag or "other", task_name=f"recommendation ({cfg.task})",
                       dataset_type=name, dataset_name=name, dataset_split=split, metric_type=k, metric_name=k,
                       metric_value=v)
            for split, metrics in results.items() for k, v in metrics.items()
            if is_metric(k, v) and not k.startswith(SUBSET_PREFIXES)]


def card_config(cfg: RunConfig, base: str | None) -> dict:
    """The settings that differ from the defaults, without the sections other tasks read and with paths
    shortened to their last part (the full config is ``translrec.yaml`` beside the card)."""
    ours = export_config(cfg).to_dict()
    defaults = RunConfig.model_validate({"task": cfg.task, "model": {"tiny": {}}}).to_dict()
    defaults["model"]["tiny"] = None  # the schema needs one encoder source; neither is a default

    def diff(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            out = {k: d for k in a if (d := diff(a[k], b.get(k))) is not _SAME}
            return out or _SAME
        return _SAME if a == b else a

    for key, tasks in TASK_ONLY.items():
        if cfg.task not in tasks:
            _drop(ours, key)
    for key in PATH_KEYS:
        _shorten(ours, key)
    ours["model"]["name_or_path"] = base if cfg.model.name_or_path else None  # the hub id, never a local path
    kept = diff(ours, defaults)
    kept = {} if kept is _SAME else kept
    return {"task": cfg.task, **kept}


_SAME = object()


def _drop(d: dict, key: tuple) -> None:
    for part in key[:-1]:
        d = d.get(part) or {}
    d.pop(key[-1], None)


def _shorten(d: dict, key: tuple) -> None:
    for part in key[:-1]:
        d = d.get(part) or {}
    if isinstance(d.get(key[-1]), str) and d[key[-1]] not in ("auto",):
        d[key[-1]] = Path(d[key[-1]]).name


def hub_shape(loads: dict) -> tuple[str, str | None]:
    for key, library, pipeline_tag in HUB_SHAPES:
        if loads.get(key):
            return library, pipeline_tag
    return "translrec-dist", None


def build_model_card(cfg: RunConfig, usage: list[str], loads: dict):
    """``usage``: the task's "How to load" lines (``Task.usage``); ``loads``: what its ``write_interop`` wrote."""
    from huggingface_hub import ModelCard, ModelCardData

    library, pipeline_tag = hub_shape(loads)
    results = read_eval(RunDir(cfg.output_dir).eval)
    base = base_model_id(cfg)
    data = data_fingerprint(cfg)
    license_ = base_license(cfg)
    tags = ["recommendation", "translrec", cfg.task] + (["sentence-transformers"] if library != "sentence-transformers"
                                                        and loads.get("sentence_transformers") else [])
    card_data = ModelCardData(
        model_name=f"translrec {cfg.task} model", base_model=base, library_name=library, pipeline_tag=pipeline_tag,
        license=license_, datasets=[data["name"]] if data["name"] != "synthetic" else None, tags=tags,
        eval_results=eval_results(cfg, results, pipeline_tag) or None)
    sources = "".join(f"\n  - `{s['path']}` ({s['bytes']} bytes, blake2b `{s['blake2b']}`)" for s in data["sources"])
    config_yaml = yaml.safe_dump(card_config(cfg, base), sort_keys=False)
    body = "\n".join([
        f"# translrec {cfg.task} model", "",
        f"- base model: {describe_base(cfg, base)}",
        f"- task: `{cfg.task}`",
        f"- data: `{data['format']}` {data['name']}, fingerprint `{data['fingerprint']}`{sources}",
        f"- license: {license_ or 'not set (the base model states none)'}",
        "", "## Evaluation", "", eval_table(results), "",
        "## How to load", "", *usage,
        "## Configuration", "", "Settings that differ from the defaults (all of them: `translrec.yaml`):", "",
        "```yaml", config_yaml.rstrip(), "```", ""])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def write_model_card(out_dir: Path, cfg: RunConfig, usage: list[str], loads: dict | None = None) -> Path:
    card = build_model_card(cfg, usage, loads or {})
    return safe_io.write_text(Path(out_dir) / "README.md", str(card), root=out_dir)
