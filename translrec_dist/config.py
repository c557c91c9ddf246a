"""Run configuration: YAML -> typed dataclasses, dotted overrides, validation before any work.

Every error names the key, the file it came from and what to do, e.g.
``train.lr: expected a number, got 'fast' (configs/x.yaml). Fix the value or override it: train.lr=3e-5``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from translrec_dist.errors import ConfigError


@dataclass
class TinyBertConfig:
    """A randomly initialised BERT built from this inline config (no download)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 256
    vocab_size: int = 2000  # size of the WordPiece vocabulary trained on the data
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1


@dataclass
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list = field(default_factory=lambda: ["query", "value"])


@dataclass
class ModelConfig:
    name_or_path: Optional[str] = None  # hub id or local directory of a pretrained encoder
    tiny: Optional[TinyBertConfig] = None  # or a tiny random-init BERT (CI, laptops)
    init_from: Optional[str] = None  # a translrec export (RUN/final) to start from
    pooling: Literal["cls", "mean"] = "cls"
    head_dropout: float = 0.1
    # any value transformers accepts (sdpa, eager, flash_attention_2, ...), checked when the encoder is built
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    trust_remote_code: bool = False
    random_init: bool = False  # the architecture of name_or_path with random weights (the "scratch" baseline)
    # Transfer knobs
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # freeze the first N transformer layers
    lora: Optional[LoraConfig] = None  # adapters through peft (pip install peft); merged into the export
    # task: retrieval (bi-encoder)
    similarity: Literal["cosine", "dot"] = "cosine"
    temperature: float = 0.05  # softmax temperature of the in-batch loss (cosine similarity)
    share_towers: bool = True  # one encoder for users and items; false: a separate item encoder
    item_id_embeddings: bool = False  # add a learned per-item vector to the item text embedding (SASRec-style)


@dataclass
class SyntheticConfig:
    num_users: int = 600
    num_items: int = 300
    num_categories: int = 8
    interactions_per_user: int = 12
    seed: int = 0


@dataclass
class DataConfig:
    format: Literal["synthetic", "text_label", "interactions", "movielens", "recbole", "amazon", "table"] = "synthetic"
    path: Optional[str] = None  # file (text_label, amazon) or directory (the others)
    columns: dict = field(default_factory=dict)  # our name -> the file's: {user_id: reviewerID, item_id: asin}
    max_bad_fraction: float = 0.001  # row-level problems above this fraction of rows read stop the run
    kcore: int = 0  # keep users and items with >= k interactions (repeated until stable); 0: off
    max_length: int = 128
    pad_to_multiple_of: Optional[int] = None  # 8 suits GPU tensor cores; = max_length pads every batch fully
    # Recommendation examples
    history_length: int = 5  # most recent items shown to the model, newest first
    history_template: str = "{text}"  # how one history item is rendered; {text} = item text
    history_separator: str = " ; "
    item_text: Optional[str] = None  # template over item columns, e.g. "{title}. Genres: {genres}"
    max_field_chars: int = 200  # each item field is truncated to this many characters
    min_history: int = 1  # interactions with fewer prior items make no training example
    positive_threshold: Optional[float] = None  # rating >= threshold is a positive; None: all
    negatives_per_positive: int = 4
    eval_items_per_user: int = 1  # leave-k-out: last k -> test, the k before -> valid
    # text_label
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    resample: Literal["none", "oversample", "undersample"] = "none"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    num_workers: int = 0
    # prepare: tokenized shards + manifest in cache_dir (default OUTPUT_DIR/prepared)
    cache_dir: Optional[str] = None
    num_shards: int = 8  # train shards; a multiple of the world size lets every rank read whole shards
    num_proc: Optional[int] = None  # tokenization processes (datasets.map); None: in this process
    # training from the prepared shards (streamed per rank; eval splits stay map-style)
    streaming: bool = False
    shuffle_buffer: int = 10_000
    group_by_length: bool = False  # batches of similar length inside windows of 64 batches (less padding)
    record_example_ids: bool = False  # streaming: each rank logs consumed ids to OUTPUT_DIR/example_ids/
    # false: prepare writes the example texts and the streaming loader tokenizes them on the fly
    # (num_workers > 0: in DataLoader workers), for corpora too big to pre-tokenize. Needs streaming=true.
    pretokenize: bool = True


@dataclass
class TrainConfig:
    max_steps: Optional[int] = None  # optimizer steps; when unset, epochs decides
    epochs: float = 1.0
    micro_batch_size: int = 16  # per process
    grad_accum: int = 1
    global_batch_size: Optional[int] = None  # if set, must equal micro x accum x world size
    lr: float = 5e-5
    head_lr: Optional[float] = None  # defaults to lr
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: Optional[float] = 1.0
    precision: Literal["no", "bf16", "fp16"] = "no"
    log_every: int = 10
    checkpoint_every: Optional[int] = None  # steps; None: only at the end
    keep_checkpoints: int = 2
    resume_from: Optional[str] = None  # "auto", a checkpoint directory, or None
    stop_after_steps: Optional[int] = None  # checkpoint and exit after this many steps in this run
    report_to: list = field(default_factory=list)  # accelerate trackers: tensorboard, wandb
    project: Optional[str] = None  # tracker project (W&B project); default "translrec"
    run_name: Optional[str] = None  # tracker run name; default: the output directory's name
    progress_bar: bool = True
    collective_timeout_s: int = 600  # a dead rank ends the job after this long instead of hanging
    max_bad_steps: int = 3  # consecutive optimizer steps with a NaN/inf loss (skipped) before the run stops
    deterministic: bool = True
    # Data parallelism: plain DDP, or DeepSpeed ZeRO stage 1/2/3 (configs/deepspeed/zeroN.json)
    distributed: Literal["ddp", "zero1", "zero2", "zero3"] = "ddp"
    offload: Literal["none", "optimizer", "all"] = "none"  # ZeRO CPU offload; "all" (parameters too) needs zero3
    deepspeed_config: Optional[str] = None  # your own DeepSpeed JSON ("auto" values are filled from this YAML)
    layer_lr_decay: float = 1.0  # lr x decay^(depth from the top) per encoder layer; 1.0: off
    gather_negatives: bool = False  # retrieval: item embeddings of all ranks are negatives (world x batch)
    mlm_probability: float = 0.15  # task mlm: fraction of tokens masked


@dataclass
class EvalConfig:
    every_steps: Optional[int] = None  # validation every N steps; None: only at the end
    micro_batch_size: int = 64
    splits: list = field(default_factory=lambda: ["test"])  # written to eval.json at the end
    best_metric: Optional[str] = None  # e.g. ndcg@10: keep the checkpoint with the best validation value
    ks: list = field(default_factory=lambda: [10, 50])  # retrieval: cutoffs of ndcg@K and recall@K


@dataclass
class IndexConfig:
    """``translrec index`` / serving: how the item vectors are searched and what the index keeps."""

    backend: Literal["exact", "faiss"] = "exact"  # faiss: approximate (HNSW) search for very large catalogs
    histories: bool = True  # keep known users' histories in the index (serving by user id without the dataset)


@dataclass
class RunConfig:
    task: Literal["ctr", "rating", "retrieval", "mlm"] = "ctr"
    output_dir: str = "runs/default"
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    source: Optional[str] = None  # where the config came from (set by the loader)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None, overrides: list[str] | tuple = ()) -> RunConfig:
    """Read YAML (or start from defaults), apply dotted overrides, build and validate."""
    raw: dict = {}
    where = str(path) if path else "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}. Pass the path of a YAML file, e.g. configs/tiny_cpu.yaml")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (model, data, train, eval)")
    for item in overrides:
        apply_override(raw, item)
    cfg = build_dataclass(RunConfig, raw, "", where)
    cfg.source = where
    validate(cfg)
    return cfg


def apply_override(raw: dict, item: str) -> None:
    """``train.lr=3e-5`` -> raw["train"]["lr"] = 3e-5 (the value is parsed as a YAML scalar)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (example: train.lr=3e-5)")
    key, value = item.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else None
    except yaml.YAMLError:
        parsed = value
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = parsed


def build_dataclass(cls, raw: Any, prefix: str, where: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(raw).__name__} ({where})")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names - {"source"})
    if unknown:
        key = f"{prefix}{unknown[0]}"
        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        hint = f" Did you mean {prefix}{close[0]}?" if close else f" Known keys: {', '.join(sorted(names))}."
        raise ConfigError(f"unknown key '{key}' ({where}).{hint}")
    kwargs = {}
    for name in names & set(raw):
        kwargs[name] = convert(hints[name], raw[name], f"{prefix}{name}", where)
    return cls(**kwargs)


def convert(tp, value, key: str, where: str):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return convert(args[0], value, key, where)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key + ".", where)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value is False and "no" in choices:  # YAML 1.1 reads a bare `no` as false (train.precision=no)
            value = "no"
        if value not in choices:
            raise ConfigError(
                f"{key}: {value!r} is not one of {', '.join(map(str, choices))} ({where}). "
                f"Set e.g. {key}={choices[0]}"
            )
        return value
    bad = f"{key}: expected {_type_name(tp)}, got {value!r} ({where}). Fix the value or override it: {key}=..."
    if value is None:
        raise ConfigError(f"{key}: a value is required, got null ({where})")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(bad)
        return value
    if tp in (int, float) and isinstance(value, str):
        try:  # YAML 1.1 reads 3e-5 (no dot) as a string; users write it that way
            value = float(value) if tp is float else int(value)
        except ValueError:
            raise ConfigError(bad) from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(bad)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(bad)
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(bad)
        return str(value)
    if tp is list or origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(bad)
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(bad)
        return value
    return value


def _type_name(tp) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


# --------------------------------------------------------------------------- validation


def validate(cfg: RunConfig) -> None:
    where = cfg.source

    def fail(key: str, msg: str):
        raise ConfigError(f"{key}: {msg} ({where})")

    m, d, t, e = cfg.model, cfg.data, cfg.train, cfg.eval
    if (m.name_or_path is None) == (m.tiny is None) and m.init_from is None:
        fail("model", "set exactly one of model.name_or_path (a pretrained encoder) or model.tiny "
             "(a random-init BERT); to switch a tiny config to a checkpoint: model.tiny=null model.name_or_path=DIR")
    if m.name_or_path is not None and m.tiny is not None:
        fail("model", "both model.name_or_path and model.tiny are set; pass model.tiny=null to use the checkpoint")
    if m.tiny is not None:
        if m.tiny.hidden_size % m.tiny.num_attention_heads:
            fail("model.tiny.hidden_size", f"{m.tiny.hidden_size} is not divisible by "
                 f"num_attention_heads={m.tiny.num_attention_heads}")
        if d.max_length > m.tiny.max_position_embeddings:
            fail("data.max_length", f"{d.max_length} exceeds the encoder's max_position_embeddings="
                 f"{m.tiny.max_position_embeddings}; lower data.max_length or raise model.tiny.max_position_embeddings")
        if m.tiny.vocab_size < 100:
            fail("model.tiny.vocab_size", "must be at least 100")
    if not 0 <= m.head_dropout < 1:
        fail("model.head_dropout", "must be in [0, 1)")
    if m.random_init and m.name_or_path is None:
        fail("model.random_init", "needs model.name_or_path (whose architecture and tokenizer are used)")
    if m.freeze_layers < 0:
        fail("model.freeze_layers", f"must be >= 0, got {m.freeze_layers}")
    if not m.temperature > 0:
        fail("model.temperature", f"must be > 0, got {m.temperature}")
    if m.lora is not None and (m.lora.r < 1 or not m.lora.target_modules):
        fail("model.lora", "needs r >= 1 and a non-empty target_modules list (e.g. [query, value])")
    if m.item_id_embeddings and cfg.task != "retrieval":
        fail("model.item_id_embeddings", "only applies to task=retrieval")
    if not d.pretokenize and not d.streaming:
        fail("data.pretokenize", "false (tokenize raw text on the fly) only applies to the streaming loader; "
             "add data.streaming=true, or drop data.pretokenize=false to tokenize up front")
    if cfg.task in ("retrieval", "mlm") and d.format == "text_label":
        fail("task", f"task={cfg.task} needs item texts; use a recommendation format (e.g. synthetic, recbole)")
    if cfg.task == "mlm" and m.init_from is not None:
        fail("model.init_from", "task=mlm starts from model.name_or_path or model.tiny, not a translrec export")

    if d.format not in ("synthetic", "recbole") and not d.path:  # recbole: null = the wheel's ml-100k
        fail("data.path", f"data.format={d.format} needs data.path (a "
             f"{'CSV/Parquet file' if d.format == 'text_label' else 'directory with the source files'})")
    unknown_columns = sorted(set(d.columns) - {"user_id", "item_id", "rating", "timestamp"})
    if unknown_columns:
        fail(f"data.columns.{unknown_columns[0]}", "only user_id, item_id, rating and timestamp can be mapped "
             "(item text fields are named in data.item_text)")
    if not 0 <= d.max_bad_fraction <= 1:
        fail("data.max_bad_fraction", f"must be in [0, 1], got {d.max_bad_fraction}")
    if d.format == "text_label" and cfg.task != "ctr":
        fail("task", "data.format=text_label holds binary labels; use task=ctr")
    if d.pad_to_multiple_of is not None and d.pad_to_multiple_of < 1:
        fail("data.pad_to_multiple_of", "must be >= 1 or null")
    if d.max_length < 8:
        fail("data.max_length", "must be at least 8 tokens")
    for key, value, low in [("data.history_length", d.history_length, 1),
                            ("data.negatives_per_positive", d.negatives_per_positive, 0),
                            ("data.eval_items_per_user", d.eval_items_per_user, 1),
                            ("data.min_history", d.min_history, 0), ("data.max_field_chars", d.max_field_chars, 1),
                            ("data.num_workers", d.num_workers, 0), ("data.kcore", d.kcore, 0),
                            ("data.num_shards", d.num_shards, 1), ("data.shuffle_buffer", d.shuffle_buffer, 1),
                            ("data.num_proc", d.num_proc or 1, 1)]:
        if value < low:
            fail(key, f"must be >= {low}, got {value}")
    if "{text}" not in d.history_template:
        fail("data.history_template", "must contain {text} (the history item's text)")
    no_negatives = d.negatives_per_positive == 0 and d.positive_threshold is None
    if cfg.task == "ctr" and d.format != "text_label" and no_negatives:
        fail("data.negatives_per_positive", "ctr with no negatives and no positive_threshold has only one class; "
             "set data.negatives_per_positive>=1")
    if not (0 <= d.valid_fraction < 1 and 0 <= d.test_fraction < 1 and d.valid_fraction + d.test_fraction < 1):
        fail("data.valid_fraction", "valid_fraction and test_fraction must be in [0,1) and sum below 1")
    s = d.synthetic
    if min(s.num_users, s.num_items, s.num_categories) < 1 or s.interactions_per_user < 3:
        fail("data.synthetic", "num_users, num_items, num_categories must be >= 1 and interactions_per_user >= 3")

    if not 0 < t.layer_lr_decay <= 1:
        fail("train.layer_lr_decay", f"must be in (0, 1], got {t.layer_lr_decay}")
    if t.gather_negatives and cfg.task != "retrieval":
        fail("train.gather_negatives", "only applies to task=retrieval")
    if not 0 < t.mlm_probability < 1:
        fail("train.mlm_probability", "must be in (0, 1)")
    if not e.ks or any(not isinstance(k, int) or k < 1 for k in e.ks):
        fail("eval.ks", f"must be a list of positive integers, got {e.ks}")
    if t.max_steps is not None and t.max_steps < 1:
        fail("train.max_steps", "must be >= 1 (or null to train for train.epochs)")
    if t.epochs <= 0:
        fail("train.epochs", "must be > 0")
    for key, value in [("train.micro_batch_size", t.micro_batch_size), ("train.grad_accum", t.grad_accum),
                       ("train.log_every", t.log_every), ("train.keep_checkpoints", t.keep_checkpoints),
                       ("eval.micro_batch_size", e.micro_batch_size)]:
        if value < 1:
            fail(key, f"must be >= 1, got {value}")
    if not t.lr > 0:
        fail("train.lr", f"must be > 0, got {t.lr}")
    if not 0 <= t.warmup_ratio < 1:
        fail("train.warmup_ratio", "must be in [0, 1)")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        fail("train.max_grad_norm", "must be > 0 (or null to disable clipping)")
    if t.checkpoint_every is not None and t.checkpoint_every < 1:
        fail("train.checkpoint_every", "must be >= 1 or null")
    if t.max_bad_steps < 1:
        fail("train.max_bad_steps", f"must be >= 1, got {t.max_bad_steps}")
    if t.collective_timeout_s < 1:
        fail("train.collective_timeout_s", f"must be >= 1 second, got {t.collective_timeout_s}")
    if t.stop_after_steps is not None and t.stop_after_steps < 1:
        fail("train.stop_after_steps", "must be >= 1 or null")
    if t.resume_from not in (None, "auto") and not Path(t.resume_from).is_dir():
        fail("train.resume_from", f"{t.resume_from} is not a directory; use auto, null or a checkpoint directory")
    for tracker in t.report_to:
        if tracker not in ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"):
            fail("train.report_to", f"unknown tracker {tracker!r}; use e.g. [tensorboard]")
    for split in e.splits:
        if split not in ("valid", "test"):
            fail("eval.splits", f"unknown split {split!r}; use valid and/or test")
    if e.every_steps is not None and e.every_steps < 1:
        fail("eval.every_steps", "must be >= 1 or null")
    from translrec_dist.training.zero_config import select_deepspeed_json

    select_deepspeed_json(cfg)  # missing/malformed JSON, stage outside 0-3, parameter offload below stage 3


def check_world_size(cfg: RunConfig, world_size: int) -> None:
    """Checks that need the number of processes (called by the launcher-side code before training)."""
    t = cfg.train
    if t.global_batch_size is not None:
        got = t.micro_batch_size * t.grad_accum * world_size
        if got != t.global_batch_size:
            raise ConfigError(
                f"train.global_batch_size={t.global_batch_size} but micro_batch_size={t.micro_batch_size} x "
                f"grad_accum={t.grad_accum} x world_size={world_size} = {got} ({cfg.source}). "
                f"Change train.grad_accum or train.micro_batch_size so the product matches."
            )


def export_config(cfg: RunConfig) -> RunConfig:
    """The config written beside an export: a plain model has no resume point, no training strategy (its
    DeepSpeed JSON may not travel) and no adapters (LoRA is merged on export)."""
    train = dataclasses.replace(cfg.train, resume_from=None, distributed="ddp", offload="none", deepspeed_config=None)
    return dataclasses.replace(cfg, train=train, model=dataclasses.replace(cfg.model, lora=None))


def dump_config(cfg: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
