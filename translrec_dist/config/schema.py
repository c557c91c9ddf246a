"""The run config's sections: field types, defaults and every check that needs nothing but the config itself.

Checks that read files or the environment are in ``translrec_dist.training.preflight``; the checks that
depend on the task belong to each task (``translrec_dist.tasks``).
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from translrec_dist.config.fields import (
    Dropout,
    Float,
    Fraction,
    Int,
    ListOrOne,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    YamlNo,
    invalid,
)

SYNTHETIC_ITEM_FIELDS = ("title", "category", "description")  # the items of data.format=synthetic
TRACKERS = Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"]
# eval.best_metric names for which a smaller value is better (eval.greater_is_better derives from this)
LOWER_IS_BETTER = frozenset({"loss", "logloss", "rmse", "mae", "mse", "perplexity"})
_NULL_IS_DEFAULTS = BeforeValidator(lambda v: {} if v is None else v)  # `eval:` with every line commented out


def _section() -> Any:
    # A missing section is validated like an empty one: `model:` left out fails with the section's key
    # instead of while building a default.
    return Field(default_factory=dict, validate_default=True)


class Section(BaseModel):
    # allow_inf_nan=False: `train.lr: .inf` used to pass and crash after training (issue 13).
    # coerce_numbers_to_str: `history_separator: 1` is the string "1", as the YAML author meant.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)


class TinyBertConfig(Section):
    """A randomly initialised BERT built from this inline config (no download)."""

    hidden_size: PositiveInt = 64
    num_hidden_layers: PositiveInt = 2
    num_attention_heads: PositiveInt = 2
    intermediate_size: PositiveInt = 128
    max_position_embeddings: PositiveInt = 256
    vocab_size: Annotated[Int, Field(ge=100)] = 2000  # size of the WordPiece vocabulary trained on the data
    hidden_dropout_prob: Dropout = 0.1
    attention_probs_dropout_prob: Dropout = 0.1

    @model_validator(mode="after")
    def _heads_divide_hidden_size(self):
        if self.hidden_size % self.num_attention_heads:
            raise invalid("hidden_size", f"{self.hidden_size} is not divisible by num_attention_heads="
                                         f"{self.num_attention_heads}; each head gets hidden_size / heads dimensions")
        return self


class LoraConfig(Section):
    r: PositiveInt = 8
    alpha: PositiveInt = 16
    dropout: Dropout = 0.0
    target_modules: Annotated[list[str], ListOrOne, Field(min_length=1)] = Field(
        default_factory=lambda: ["query", "value"])


class SequenceConfig(Section):
    """task=sequential: a causal transformer (SASRec) over item vectors from the pretrained text encoder."""

    item_repr: Literal["text", "id", "text+id"] = "text"  # id: no text at all (the SASRec baseline)
    # frozen: item vectors computed once and cached; top_layers: the top train_layers layers train; lora: LoRA
    # adapters (model.lora's r/alpha/targets) on the top train_layers layers; full: every layer trains
    encoder: Literal["frozen", "top_layers", "lora", "full"] = "frozen"
    train_layers: PositiveInt = 2  # encoder=top_layers|lora: the top N encoder layers train
    # top_layers|lora: the frozen lower layers' token states are computed once per run (OUTPUT_DIR/layer_states)
    # and each step runs only the top layers; false: the whole encoder runs on the batch's items every step
    layer_cache: StrictBool = True
    # top_layers|lora with layer_cache: items re-encoded with gradients per step, a sample of the global batch's
    # items (the rest use the vectors of the last refresh); None: all of them
    encode_items_per_step: Optional[PositiveInt] = None
    # top_layers|lora with layer_cache: the trained top layers' dropout; false (default): off, like the cached
    # vectors of the other items that the re-encoded ones are ranked against
    encoder_dropout: StrictBool = False
    encoder_frozen_steps: NonNegativeInt = 0  # two-stage: the encoder trains only after N optimizer steps
    encoder_lr: Optional[PositiveFloat] = None  # learning rate of the item encoder's parameters (None: train.lr)
    # text+id: weight of a distillation term teaching a text-only head (cold_head) to reproduce the trained
    # items' text+ID vectors; items without a trained ID vector are then scored through that head (cold start)
    distill: Annotated[Float, Field(ge=0)] = 0.0
    # distill > 0: the cold head's vectors are multiplied by this (1: as trained); below 1 ranks items without an ID
    # vector lower against warm ones. bench/cold_calibration.py picks it on the validation split of a trained run
    cold_scale: Annotated[Float, Field(ge=0)] = 1.0
    refresh_every: PositiveInt = 50  # encoder=top_layers|full: catalog vectors re-encoded every N optimizer steps
    adaptor: Literal["linear", "mlp", "whitening", "moe"] = "mlp"  # text vector -> hidden (UniSRec: whitening, moe)
    adaptor_experts: PositiveInt = 4  # adaptor=moe
    hidden: PositiveInt = 64
    layers: PositiveInt = 2
    heads: PositiveInt = 2
    inner: PositiveInt = 256  # feed-forward width
    dropout: Dropout = 0.5
    attn_dropout: Dropout = 0.5
    # on the text vectors before the adaptor; 0: dropout there costs held-out (cold) items most (their NDCG@10 as
    # a share of warm items', mean over seeds: .3 -> .29, .1 -> .47, 0 -> .69; docs/results.md)
    adaptor_dropout: Dropout = 0.0
    id_dropout: Dropout = 0.0  # text+id: share of items whose ID vector is left out in each training step
    # text+id: the ID part of an item without a trained ID vector (held out, new, or dropped by id_dropout):
    # zero (its text alone), or one learned "unknown item" vector (trained by id_dropout), so that such items
    # are scored on the same scale as warm items (cold start).
    unknown_id: Literal["zero", "learned"] = "zero"
    normalize: StrictBool = False  # cosine scores (x 1/temperature) instead of dot products
    temperature: PositiveFloat = 0.07
    loss: Literal["full", "sampled"] = "full"  # full-catalog softmax, or in-batch + sampled negatives with logQ
    num_negatives: NonNegativeInt = 256  # loss=sampled: extra negatives per batch, drawn by training popularity
    logq: StrictBool = True  # loss=sampled: subtract log(sampling probability) from each negative's logit
    window_stride: Optional[PositiveInt] = None  # training windows start every N items (None: data.max_history)

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden % self.heads:
            raise invalid("hidden", f"{self.hidden} is not divisible by model.sequence.heads={self.heads}")
        return self


class ModelConfig(Section):
    name_or_path: Optional[str] = None  # hub id or local directory of a pretrained encoder
    tiny: Optional[TinyBertConfig] = None  # or a tiny random-init BERT (CI, laptops)
    init_from: Optional[str] = None  # a translrec export (RUN/final) to start from
    pooling: Literal["cls", "mean"] = "cls"
    head_dropout: Dropout = 0.1
    # any value transformers accepts (sdpa, eager, flash_attention_2, ...), checked when the encoder is built
    attn_implementation: Annotated[str, Field(min_length=1)] = "sdpa"
    gradient_checkpointing: StrictBool = False  # recompute activations in backward: less memory, ~30% more compute
    trust_remote_code: StrictBool = False
    random_init: StrictBool = False  # the architecture of name_or_path with random weights (the "scratch" baseline)
    # Transfer knobs
    freeze_embeddings: StrictBool = False
    freeze_layers: NonNegativeInt = 0  # freeze the first N transformer layers
    lora: Optional[LoraConfig] = None  # adapters through peft (pip install peft); merged into the export
    # task: retrieval (bi-encoder)
    similarity: Literal["cosine", "dot"] = "cosine"
    temperature: PositiveFloat = 0.05  # softmax temperature of the in-batch loss (cosine similarity)
    share_towers: StrictBool = True  # one encoder for users and items; false: a separate item encoder
    item_id_embeddings: StrictBool = False  # add a learned per-item vector to the item text embedding (SASRec-style)
    sequence: Annotated[SequenceConfig, _NULL_IS_DEFAULTS] = _section()  # task: sequential

    @model_validator(mode="after")
    def _one_source(self):
        reads_text = self.sequence.item_repr != "id"  # the ID-only sequence model (SASRec baseline) has no encoder
        if (self.name_or_path is None) == (self.tiny is None) and self.init_from is None and (
                reads_text or self.tiny is not None):
            raise invalid("", "set exactly one of model.name_or_path (a pretrained encoder) or model.tiny (a "
                              "random-init BERT); to switch a tiny config to a checkpoint: model.tiny=null "
                              "model.name_or_path=DIR")
        if self.name_or_path is not None and self.tiny is not None:
            raise invalid("", "both model.name_or_path and model.tiny are set; pass model.tiny=null to use the "
                              "checkpoint")
        if self.random_init and self.name_or_path is None:
            raise invalid("random_init", "needs model.name_or_path (whose architecture and tokenizer are used)")
        return self


class SyntheticConfig(Section):
    num_users: PositiveInt = 600
    num_items: PositiveInt = 300
    num_categories: PositiveInt = 8
    interactions_per_user: Annotated[Int, Field(ge=3)] = 12
    seed: Int = 0


class DataConfig(Section):
    format: Literal["synthetic", "text_label", "interactions", "movielens", "recbole", "amazon", "table"] = "synthetic"
    path: Optional[str] = None  # file (text_label, amazon) or directory (the others)
    columns: dict[str, str] = Field(default_factory=dict)  # our name -> the file's: {user_id: reviewerID, ...}
    max_bad_fraction: Annotated[Float, Field(ge=0, le=1)] = 0.001  # row-level problems above this fraction stop
    kcore: NonNegativeInt = 0  # keep users and items with >= k interactions (repeated until stable); 0: off
    max_length: Annotated[Int, Field(ge=8)] = 128
    pad_to_multiple_of: Optional[PositiveInt] = None  # 8 suits GPU tensor cores; = max_length pads every batch fully
    # Recommendation examples
    history_length: PositiveInt = 5  # most recent items shown to the model, newest first
    history_template: str = "{text}"  # how one history item is rendered; {text} = item text
    history_separator: str = " ; "
    item_text: Optional[str] = None  # template over item columns, e.g. "{title}. Genres: {genres}"
    max_field_chars: PositiveInt = 200  # each item field is truncated to this many characters
    min_history: NonNegativeInt = 1  # interactions with fewer prior items make no training example
    positive_threshold: Optional[Float] = None  # rating >= threshold is a positive; None: all
    negatives_per_positive: NonNegativeInt = 4
    eval_items_per_user: PositiveInt = 1  # leave-k-out: last k -> test, the k before -> valid
    max_history: PositiveInt = 50  # task=sequential: items the sequence model reads (training windows, eval)
    cold_item_fraction: Fraction = 0.0  # task=sequential: seeded share of items whose interactions all leave train
    # text_label
    valid_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.1
    resample: Literal["none", "oversample", "undersample"] = "none"
    synthetic: Annotated[SyntheticConfig, _NULL_IS_DEFAULTS] = _section()
    num_workers: NonNegativeInt = 0
    # prepare: tokenized shards + manifest in cache_dir (default OUTPUT_DIR/prepared)
    cache_dir: Optional[str] = None
    num_shards: PositiveInt = 8  # train shards; a multiple of the world size lets every rank read whole shards
    num_proc: Optional[PositiveInt] = None  # tokenization processes (datasets.map); None: in this process
    # training from the prepared shards (streamed per rank; eval splits stay map-style)
    streaming: StrictBool = False
    shuffle_buffer: PositiveInt = 10_000
    group_by_length: StrictBool = False  # batches of similar length inside windows of 64 batches (less padding)
    record_example_ids: StrictBool = False  # streaming: each rank logs consumed ids to OUTPUT_DIR/example_ids/
    # false: prepare writes the example texts and the streaming loader tokenizes them on the fly
    # (num_workers > 0: in DataLoader workers), for corpora too big to pre-tokenize. Needs streaming=true.
    pretokenize: StrictBool = True

    @model_validator(mode="after")
    def _consistent(self):
        if not self.pretokenize and not self.streaming:
            raise invalid("pretokenize", "false (tokenize raw text on the fly) only applies to the streaming "
                                         "loader; add data.streaming=true, or drop data.pretokenize=false to "
                                         "tokenize up front")
        if self.format not in ("synthetic", "recbole") and not self.path:  # recbole: null = the wheel's ml-100k
            kind = "CSV/Parquet file" if self.format == "text_label" else "directory with the source files"
            raise invalid("path", f"data.format={self.format} needs data.path (a {kind})")
        unknown_columns = sorted(set(self.columns) - {"user_id", "item_id", "rating", "timestamp"})
        if unknown_columns:
            raise invalid(f"columns.{unknown_columns[0]}", "only user_id, item_id, rating and timestamp can be "
                                                           "mapped (item text fields are named in data.item_text)")
        history_fields = template_fields(self.history_template, "history_template")
        unknown = [f for f in history_fields if f != "text"]
        if unknown:
            raise invalid("history_template", f"unknown field {{{unknown[0]}}}; the only field is {{text}} "
                                              f"(the history item's text)")
        if "text" not in history_fields:
            raise invalid("history_template", "must contain {text} (the history item's text)")
        if self.item_text is not None:
            template_fields(self.item_text, "item_text")
        if self.valid_fraction + self.test_fraction >= 1:
            raise invalid("valid_fraction", "valid_fraction and test_fraction must be in [0,1) and sum below 1")
        return self


def template_fields(template: str, key: str) -> list[str]:
    """The field names of a ``str.format`` template; a syntax error is a config error now, not a
    ValueError/KeyError while the data is read."""
    fix = "write fields as {name} and a literal brace as {{ or }}"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise invalid(key, f"{template!r} is not a valid template: {e}; {fix}") from None
    names = [name for _, name, _, _ in parsed if name is not None]
    for name in names:
        if not name or name.isdigit() or "." in name or "[" in name:
            raise invalid(key, f"field {{{name}}} in {template!r} must be a column name such as {{title}} "
                               f"(no positions, attributes or indexes); {fix}")
    try:
        template.format(**{name: "" for name in names})  # conversions and format specs against text values
    except (ValueError, KeyError, IndexError) as e:
        raise invalid(key, f"{template!r} cannot be rendered: {e!r}; {fix}") from None
    return names


class TrainConfig(Section):
    max_steps: Optional[PositiveInt] = None  # optimizer steps; when unset, epochs decides
    epochs: PositiveFloat = 1.0
    micro_batch_size: PositiveInt = 16  # per process
    grad_accum: PositiveInt = 1
    global_batch_size: Optional[PositiveInt] = None  # if set, must equal micro x accum x world size (preflight)
    lr: PositiveFloat = 5e-5
    head_lr: Optional[PositiveFloat] = None  # defaults to lr
    weight_decay: Annotated[Float, Field(ge=0)] = 0.01
    warmup_ratio: Fraction = 0.06
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: Optional[PositiveFloat] = 1.0  # null: no clipping
    precision: Annotated[Literal["no", "bf16", "fp16"], YamlNo] = "no"
    log_every: PositiveInt = 10
    checkpoint_every: Optional[PositiveInt] = None  # steps; None: only at the end
    keep_checkpoints: PositiveInt = 2
    resume_from: Optional[str] = None  # "auto", a checkpoint directory, or None
    # Start over in an output_dir that holds an earlier run, removing the files it wrote (README "Resuming")
    overwrite: StrictBool = False
    stop_after_steps: Optional[PositiveInt] = None  # checkpoint and exit after this many steps in this run
    report_to: Annotated[list[TRACKERS], ListOrOne] = Field(default_factory=list)  # accelerate trackers
    project: Optional[str] = None  # tracker project (the W&B project); default "translrec"
    run_name: Optional[str] = None  # tracker run name; default: the output directory's name
    progress_bar: StrictBool = True
    collective_timeout_s: PositiveInt = 600  # a dead rank ends the job after this long instead of hanging
    max_bad_steps: PositiveInt = 3  # consecutive optimizer steps with a NaN/inf loss (skipped) before the run stops
    deterministic: StrictBool = True
    # Data parallelism: plain DDP, or DeepSpeed ZeRO stage 1/2/3 (configs/deepspeed/zeroN.json)
    distributed: Literal["ddp", "zero1", "zero2", "zero3"] = "ddp"
    offload: Literal["none", "optimizer", "all"] = "none"  # ZeRO CPU offload; "all" (parameters too) needs zero3
    deepspeed_config: Optional[str] = None  # your own DeepSpeed JSON ("auto" values are filled from this YAML)
    layer_lr_decay: Annotated[Float, Field(gt=0, le=1)] = 1.0  # lr x decay^(depth from the top) per layer; 1: off
    gather_negatives: StrictBool = False  # retrieval, sequential: item vectors of all ranks are negatives
    mlm_probability: Annotated[Float, Field(gt=0, lt=1)] = 0.15  # task mlm: fraction of tokens masked

    @model_validator(mode="after")
    def _overwrite_or_resume(self):
        # Both would let a requeued job (the SLURM scripts pass resume_from=auto) wipe its own checkpoints.
        if self.overwrite and self.resume_from is not None:
            raise invalid("overwrite", f"true starts over, train.resume_from={self.resume_from} continues: pass "
                                       "one of them (to start over under the SLURM scripts, which always pass "
                                       "resume_from=auto, use a new output_dir)")
        return self


class EvalConfig(Section):
    every_steps: Optional[PositiveInt] = None  # validation every N steps; None: only at the end
    micro_batch_size: PositiveInt = 64
    splits: Annotated[list[Literal["valid", "test"]], ListOrOne] = Field(
        default_factory=lambda: ["test"])  # written to eval.json at the end
    best_metric: Optional[str] = None  # e.g. ndcg@10: keep the checkpoint with the best validation value
    # Whether a larger best_metric is better. None: derived from the name, lower is better for loss, logloss,
    # rmse, mae, mse, perplexity and *_loss, higher for everything else (auc, ndcg@K, ...). See best_is_higher.
    greater_is_better: Optional[StrictBool] = None
    ks: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        default_factory=lambda: [10, 50])  # retrieval: cutoffs of ndcg@K and recall@K

    @model_validator(mode="after")
    def _direction_needs_a_metric(self):
        if self.greater_is_better is not None and not self.best_metric:
            raise invalid("greater_is_better", "only applies with eval.best_metric; set eval.best_metric=NAME "
                                               "or drop eval.greater_is_better")
        return self

    @property
    def best_is_higher(self) -> bool:
        """Direction of eval.best_metric for best-checkpoint selection: eval.greater_is_better when set."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        return higher_is_better(self.best_metric or "")


def higher_is_better(metric: str) -> bool:
    name = metric.lower()
    return not (name in LOWER_IS_BETTER or name.endswith("_loss"))


class IndexConfig(Section):
    """``translrec index`` / serving: how the item vectors are searched and what the index keeps."""

    backend: Literal["exact", "faiss"] = "exact"  # faiss: approximate (HNSW) search for very large catalogs
    histories: StrictBool = True  # keep known users' histories in the index (serving by user id without the data)


class RunConfig(Section):
    task: str = "ctr"  # a name in the task registry (translrec_dist.tasks): ctr, rating, retrieval, mlm, ...
    output_dir: Annotated[str, Field(min_length=1)] = "runs/default"
    seed: Int = 42
    model: Annotated[ModelConfig, _NULL_IS_DEFAULTS] = _section()
    data: Annotated[DataConfig, _NULL_IS_DEFAULTS] = _section()
    train: Annotated[TrainConfig, _NULL_IS_DEFAULTS] = _section()
    eval: Annotated[EvalConfig, _NULL_IS_DEFAULTS] = _section()
    index: Annotated[IndexConfig, _NULL_IS_DEFAULTS] = _section()
    source: Optional[str] = Field(default=None, exclude=True)  # where the config came from (set by the loader)

    def to_dict(self) -> dict:
        return self.model_dump()

    @model_validator(mode="after")
    def _sections_agree(self):
        m, d = self.model, self.data
        if m.tiny is not None and d.max_length > m.tiny.max_position_embeddings:
            raise invalid("data.max_length", f"{d.max_length} exceeds the encoder's max_position_embeddings="
                                             f"{m.tiny.max_position_embeddings}; lower data.max_length or raise "
                                             f"model.tiny.max_position_embeddings")
        if d.format == "text_label":  # a fraction of 0 leaves that split empty; evaluating it crashes after training
            e = self.eval
            for split, fraction in (("valid", d.valid_fraction), ("test", d.test_fraction)):
                used = split in e.splits or (split == "valid" and (e.every_steps or e.best_metric))
                if fraction == 0 and used:
                    raise invalid(f"data.{split}_fraction", f"is 0, so the {split} split is empty, but eval "
                                                            f"(splits, every_steps or best_metric) uses it; set "
                                                            f"data.{split}_fraction above 0 or stop evaluating {split}")
        if d.format == "synthetic" and d.item_text is not None:
            unknown = [f for f in template_fields(d.item_text, "data.item_text") if f not in SYNTHETIC_ITEM_FIELDS]
            if unknown:
                raise invalid("data.item_text", f"field {{{unknown[0]}}} is not an items column of "
                                                f"data.format=synthetic; available: {', '.join(SYNTHETIC_ITEM_FIELDS)}")
        return self
