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


def _section(description: str) -> Any:
    # A missing section is validated like an empty one: `model:` left out fails with the section's key
    # instead of while building a default.
    return Field(default_factory=dict, validate_default=True, description=description)


class Section(BaseModel):
    # allow_inf_nan=False: `train.lr: .inf` used to pass and crash after training (issue 13).
    # coerce_numbers_to_str: `history_separator: 1` is the string "1", as the YAML author meant.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)


class TinyBertConfig(Section):
    """A randomly initialised BERT built from this inline config (no download)."""

    hidden_size: PositiveInt = Field(64, description="width of the tiny BERT")
    num_hidden_layers: PositiveInt = Field(2, description="transformer layers")
    num_attention_heads: PositiveInt = Field(2, description="attention heads (must divide hidden_size)")
    intermediate_size: PositiveInt = Field(128, description="feed-forward width")
    max_position_embeddings: PositiveInt = Field(256, description="longest input in tokens (at least data.max_length)")
    vocab_size: Annotated[Int, Field(ge=100)] = Field(2000, description=(
        "size of the WordPiece vocabulary trained on the data"))
    hidden_dropout_prob: Dropout = Field(0.1, description="dropout on hidden states")
    attention_probs_dropout_prob: Dropout = Field(0.1, description="dropout on attention probabilities")

    @model_validator(mode="after")
    def _heads_divide_hidden_size(self):
        if self.hidden_size % self.num_attention_heads:
            raise invalid("hidden_size", f"{self.hidden_size} is not divisible by num_attention_heads="
                                         f"{self.num_attention_heads}; each head gets hidden_size / heads dimensions")
        return self


class LoraConfig(Section):
    r: PositiveInt = Field(8, description="rank of the adapters")
    alpha: PositiveInt = Field(16, description="scaling numerator (the update is scaled by alpha / r)")
    dropout: Dropout = Field(0.0, description="dropout on the adapter input")
    target_modules: Annotated[list[str], ListOrOne, Field(min_length=1)] = Field(
        default_factory=lambda: ["query", "value"], description="names of the linear layers that get adapters")


class SequenceConfig(Section):
    """task=sequential: a causal transformer (SASRec) over item vectors from the pretrained text encoder."""

    item_repr: Literal["text", "id", "text+id"] = Field("text", description=(
        "what an item is: text (encoder vectors), id (learned vectors only, the SASRec baseline, no text "
        "read), text+id"))
    encoder: Literal["frozen", "top_layers", "lora", "full"] = Field("frozen", description=(
        "frozen (item vectors computed once and cached); top_layers (the top train_layers layers train); lora "
        "(LoRA adapters, model.lora's r/alpha/targets, on the top train_layers layers); full (every layer trains)"))
    train_layers: PositiveInt = Field(2, description="encoder=top_layers|lora: the top N encoder layers train")
    layer_cache: StrictBool = Field(True, description=(
        "encoder=top_layers|lora: the frozen lower layers' token states are computed once per run "
        "(OUTPUT_DIR/layer_states) and each step runs only the top layers; false: the whole encoder runs on the "
        "batch's items every step"))
    encode_items_per_step: Optional[PositiveInt] = Field(None, description=(
        "top_layers|lora with layer_cache: items re-encoded with gradients per step, a sample of the global "
        "batch's items (the rest use the vectors of the last refresh); null: all of them"))
    encoder_dropout: StrictBool = Field(False, description=(
        "top_layers|lora with layer_cache: dropout in the trained top layers (off by default, like the cached "
        "vectors of the other items the re-encoded ones are ranked against)"))
    encoder_frozen_steps: NonNegativeInt = Field(0, description=(
        "two-stage schedule: the encoder trains only after N optimizer steps"))
    encoder_lr: Optional[PositiveFloat] = Field(None, description=(
        "learning rate of the item encoder's parameters (null: train.lr)"))
    distill: Annotated[Float, Field(ge=0)] = Field(0.0, description=(
        "text+id: weight of a distillation term teaching a text-only head to reproduce the trained items' "
        "text+ID vectors; items without a trained ID vector are scored through that head (cold start)"))
    cold_scale: Annotated[Float, Field(ge=0)] = Field(1.0, description=(
        "distill > 0: the cold head's vectors are multiplied by this (1: as trained); bench/cold_calibration.py "
        "picks it on the validation split"))
    refresh_every: PositiveInt = Field(50, description=(
        "encoder=top_layers|lora|full: catalog vectors re-encoded every N optimizer steps"))
    adaptor: Literal["linear", "mlp", "whitening", "moe"] = Field("mlp", description=(
        "text vector -> hidden: linear, mlp, whitening or moe (UniSRec)"))
    adaptor_experts: PositiveInt = Field(4, description="adaptor=moe: number of experts")
    hidden: PositiveInt = Field(64, description="hidden size of the sequence transformer")
    layers: PositiveInt = Field(2, description="transformer layers of the sequence model")
    heads: PositiveInt = Field(2, description="attention heads (must divide hidden)")
    inner: PositiveInt = Field(256, description="feed-forward width")
    dropout: Dropout = Field(0.5, description="dropout in the sequence transformer")
    attn_dropout: Dropout = Field(0.5, description="dropout on attention probabilities")
    # on the text vectors before the adaptor; 0: dropout there costs held-out (cold) items most (their NDCG@10 as
    # a share of warm items', mean over seeds: .3 -> .29, .1 -> .47, 0 -> .69; docs/results.md)
    adaptor_dropout: Dropout = Field(0.0, description=(
        "dropout on the text vectors before the adaptor (0 keeps cold items best; docs/results.md)"))
    id_dropout: Dropout = Field(0.0, description=(
        "text+id: share of items whose ID vector is left out in each training step"))
    # text+id: the ID part of an item without a trained ID vector (held out, new, or dropped by id_dropout):
    # zero (its text alone), or one learned "unknown item" vector (trained by id_dropout), so that such items
    # are scored on the same scale as warm items (cold start).
    unknown_id: Literal["zero", "learned"] = Field("zero", description=(
        "text+id: the ID part of an item without a trained ID vector: zero, or one learned unknown-item "
        "vector"))
    normalize: StrictBool = Field(False, description="cosine scores (x 1/temperature) instead of dot products")
    temperature: PositiveFloat = Field(0.07, description="normalize=true: softmax temperature")
    loss: Literal["full", "sampled"] = Field("full", description=(
        "full (softmax over the whole catalog) or sampled (in-batch + sampled negatives with logQ)"))
    num_negatives: NonNegativeInt = Field(256, description=(
        "loss=sampled: extra negatives per batch, drawn by training popularity"))
    logq: StrictBool = Field(True, description=(
        "loss=sampled: subtract log(sampling probability) from each negative's logit"))
    window_stride: Optional[PositiveInt] = Field(None, description=(
        "training windows start every N items (null: data.max_history)"))

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden % self.heads:
            raise invalid("hidden", f"{self.hidden} is not divisible by model.sequence.heads={self.heads}")
        return self


class ModelConfig(Section):
    name_or_path: Optional[str] = Field(None, description=(
        "hub id or local directory of a pretrained encoder (AutoModel); exclusive with model.tiny"))
    tiny: Optional[TinyBertConfig] = Field(None, description=(
        "a tiny random-init BERT built from this inline config (no download); its WordPiece vocabulary is"
        " trained on the data"))
    init_from: Optional[str] = Field(None, description="a translrec export (RUN/final) to start from")
    pooling: Literal["cls", "mean"] = Field("cls", description=(
        "how token vectors become one vector: cls (first token) or mean"))
    head_dropout: Dropout = Field(0.1, description="dropout before the scoring head (ctr, rating)")
    # any value transformers accepts (sdpa, eager, flash_attention_2, ...), checked when the encoder is built
    attn_implementation: Annotated[str, Field(min_length=1)] = Field("sdpa", description=(
        "transformers attention kernel: sdpa, eager, flash_attention_2, ... (checked when the encoder is "
        "built)"))
    gradient_checkpointing: StrictBool = Field(False, description=(
        "recompute activations in backward: less memory, about 30% more compute"))
    trust_remote_code: StrictBool = Field(False, description=(
        "allow Python code shipped with the checkpoint (auto_map) to run; only for checkpoints you trust"))
    random_init: StrictBool = Field(False, description=(
        "the architecture of name_or_path with random weights (the scratch baseline)"))
    # Transfer knobs
    freeze_embeddings: StrictBool = Field(False, description="keep the encoder's embedding layer fixed")
    freeze_layers: NonNegativeInt = Field(0, description="freeze the first N transformer layers")
    lora: Optional[LoraConfig] = Field(None, description=(
        "LoRA adapters through peft (pip install peft), merged into the export: r, alpha, dropout, "
        "target_modules"))
    # task: retrieval (bi-encoder)
    similarity: Literal["cosine", "dot"] = Field("cosine", description=(
        "retrieval: cosine (normalised vectors) or dot product"))
    temperature: PositiveFloat = Field(0.05, description=(
        "retrieval: softmax temperature of the in-batch loss with cosine similarity"))
    share_towers: StrictBool = Field(True, description=(
        "retrieval: one encoder for users and items; false: a separate item encoder"))
    item_id_embeddings: StrictBool = Field(False, description=(
        "retrieval: add a learned per-item vector to the item text embedding"))
    sequence: Annotated[SequenceConfig, _NULL_IS_DEFAULTS] = _section(
        "task=sequential: the SASRec-style model over item vectors")

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
    num_users: PositiveInt = Field(600, description="synthetic users")
    num_items: PositiveInt = Field(300, description="synthetic items")
    num_categories: PositiveInt = Field(8, description="item categories (users prefer some)")
    interactions_per_user: Annotated[Int, Field(ge=3)] = Field(12, description="interactions generated per user")
    seed: Int = Field(0, description="seed of the generator")


class DataConfig(Section):
    format: Literal["synthetic", "text_label", "interactions", "movielens", "recbole", "amazon", "table"] = Field(
        "synthetic", description=(
        "source format: synthetic (built in), text_label, interactions, movielens, recbole, amazon, table"))
    path: Optional[str] = Field(None, description=(
        "file (text_label, amazon) or directory (the others); recbole without a path: the MovieLens-100k "
        "in recbole's wheel"))
    columns: dict[str, str] = Field(default_factory=dict, description=(
        "our column name -> the file's, e.g. {user_id: reviewerID}; only user_id, item_id, rating, "
        "timestamp"))
    max_bad_fraction: Annotated[Float, Field(ge=0, le=1)] = Field(0.001, description=(
        "share of malformed rows above which reading stops"))
    kcore: NonNegativeInt = Field(0, description=(
        "keep users and items with at least k interactions (repeated until stable); 0: off"))
    max_length: Annotated[Int, Field(ge=8)] = Field(128, description="tokens per example (history truncated first)")
    pad_to_multiple_of: Optional[PositiveInt] = Field(None, description=(
        "pad batches to a multiple of N tokens (8 suits GPU tensor cores)"))
    # Recommendation examples
    history_length: PositiveInt = Field(5, description="most recent items shown to the model, newest first")
    history_template: str = Field("{text}", description="how one history item is rendered; {text} is the item text")
    history_separator: str = Field(" ; ", description="between rendered history items")
    item_text: Optional[str] = Field(None, description=(
        'template over item columns, e.g. "{title}. Genres: {genres}" (null: the format\'s default)'))
    max_field_chars: PositiveInt = Field(200, description="each item field is truncated to this many characters")
    min_history: NonNegativeInt = Field(1, description="interactions with fewer prior items make no training example")
    positive_threshold: Optional[Float] = Field(None, description=(
        "rating >= threshold is a positive (ctr); null: every interaction"))
    negatives_per_positive: NonNegativeInt = Field(4, description="ctr: sampled negatives per positive")
    eval_items_per_user: PositiveInt = Field(1, description=(
        "leave-k-out: the last k items go to test, the k before to valid"))
    max_history: PositiveInt = Field(50, description=(
        "task=sequential: items the sequence model reads (training windows, eval)"))
    cold_item_fraction: Fraction = Field(0.0, description=(
        "task=sequential: seeded share of items whose interactions all leave train (cold-start eval)"))
    # text_label
    valid_fraction: Fraction = Field(0.1, description="text_label: share of rows in valid")
    test_fraction: Fraction = Field(0.1, description="text_label: share of rows in test")
    resample: Literal["none", "oversample", "undersample"] = Field("none", description=(
        "text_label: balance the training labels by oversampling or undersampling"))
    synthetic: Annotated[SyntheticConfig, _NULL_IS_DEFAULTS] = _section("data.format=synthetic: the generator's sizes")
    num_workers: NonNegativeInt = Field(0, description="DataLoader worker processes")
    # prepare: tokenized shards + manifest in cache_dir (default OUTPUT_DIR/prepared)
    cache_dir: Optional[str] = Field(None, description=(
        "where prepare writes tokenized shards (null: OUTPUT_DIR/prepared)"))
    num_shards: PositiveInt = Field(8, description=(
        "train shards; a multiple of the world size lets every rank read whole shards"))
    num_proc: Optional[PositiveInt] = Field(None, description=(
        "tokenization processes (datasets.map); null: in this process"))
    # training from the prepared shards (streamed per rank; eval splits stay map-style)
    streaming: StrictBool = Field(False, description=(
        "train from the prepared shards, streamed per rank (eval splits stay in memory)"))
    shuffle_buffer: PositiveInt = Field(10_000, description="streaming: examples in the shuffle buffer")
    group_by_length: StrictBool = Field(False, description=(
        "batches of similar length within windows of 64 batches (less padding)"))
    record_example_ids: StrictBool = Field(False, description=(
        "streaming: each rank logs the example ids it consumed to OUTPUT_DIR/example_ids/"))
    # false: prepare writes the example texts and the streaming loader tokenizes them on the fly
    # (num_workers > 0: in DataLoader workers), for corpora too big to pre-tokenize. Needs streaming=true.
    pretokenize: StrictBool = Field(True, description=(
        "false: prepare writes texts and the streaming loader tokenizes on the fly (needs streaming=true)"))

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
    max_steps: Optional[PositiveInt] = Field(None, description="optimizer steps; null: train.epochs decides")
    epochs: PositiveFloat = Field(1.0, description="passes over the training data when max_steps is unset")
    micro_batch_size: PositiveInt = Field(16, description="examples per process per forward pass")
    grad_accum: PositiveInt = Field(1, description=(
        "micro-batches per optimizer step; global batch = micro x accum x processes"))
    global_batch_size: Optional[PositiveInt] = Field(None, description=(
        "optional check that micro x accum x processes equals this"))
    lr: PositiveFloat = Field(5e-5, description="AdamW learning rate (no decay on biases and LayerNorm)")
    head_lr: Optional[PositiveFloat] = Field(None, description="learning rate of the task head (null: train.lr)")
    weight_decay: Annotated[Float, Field(ge=0)] = Field(0.01, description="AdamW weight decay")
    warmup_ratio: Fraction = Field(0.06, description="share of steps with linear warmup")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description=(
        "learning-rate schedule after warmup: linear, cosine or constant"))
    max_grad_norm: Optional[PositiveFloat] = Field(1.0, description="gradient clipping norm (null: no clipping)")
    precision: Annotated[Literal["no", "bf16", "fp16"], YamlNo] = Field("no", description=(
        "no (fp32), bf16 or fp16 autocast (CPU: bf16 only with native bf16; README)"))
    log_every: PositiveInt = Field(10, description="steps between metrics.jsonl lines")
    checkpoint_every: Optional[PositiveInt] = Field(None, description=(
        "steps between checkpoints (null: only at the end)"))
    keep_checkpoints: PositiveInt = Field(2, description="newest checkpoints kept")
    resume_from: Optional[str] = Field(None, description=(
        "auto (the newest complete checkpoint), a checkpoint directory, or null"))
    # Start over in an output_dir that holds an earlier run, removing the files it wrote (README "Resuming")
    overwrite: StrictBool = Field(False, description=(
        "start over in an output_dir that holds an earlier run, removing the files it wrote"))
    stop_after_steps: Optional[PositiveInt] = Field(None, description=(
        "checkpoint and exit after this many steps of this invocation (time-boxed jobs)"))
    report_to: Annotated[list[TRACKERS], ListOrOne] = Field(default_factory=list, description=(
        "Accelerate trackers: tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive (each needs its"
        " package)"))
    project: Optional[str] = Field(None, description="tracker project (the W&B project); null: translrec")
    run_name: Optional[str] = Field(None, description="tracker run name; null: the output directory's name")
    progress_bar: StrictBool = Field(True, description="show a tqdm progress bar on the main process")
    collective_timeout_s: PositiveInt = Field(600, description=(
        "a dead rank ends the job after this many seconds instead of hanging"))
    max_bad_steps: PositiveInt = Field(3, description=(
        "consecutive optimizer steps with a NaN/inf loss (skipped) before the run stops"))
    deterministic: StrictBool = Field(True, description="deterministic algorithms and seeded data order")
    # Data parallelism: plain DDP, or DeepSpeed ZeRO stage 1/2/3 (configs/deepspeed/zeroN.json)
    distributed: Literal["ddp", "zero1", "zero2", "zero3"] = Field("ddp", description=(
        "data parallelism: ddp, or DeepSpeed ZeRO stage zero1, zero2, zero3"))
    offload: Literal["none", "optimizer", "all"] = Field("none", description=(
        "ZeRO CPU offload: none, optimizer, or all (parameters too; needs zero3)"))
    deepspeed_config: Optional[str] = Field(None, description=(
        'your own DeepSpeed JSON ("auto" values are filled from this config)'))
    layer_lr_decay: Annotated[Float, Field(gt=0, le=1)] = Field(1.0, description=(
        "lr x decay^(depth from the top) per encoder layer; 1: off"))
    gather_negatives: StrictBool = Field(False, description=(
        "retrieval, sequential: item vectors of all ranks are negatives"))
    mlm_probability: Annotated[Float, Field(gt=0, lt=1)] = Field(0.15, description=(
        "task=mlm: fraction of tokens masked"))

    @model_validator(mode="after")
    def _overwrite_or_resume(self):
        # Both would let a requeued job (the SLURM scripts pass resume_from=auto) wipe its own checkpoints.
        if self.overwrite and self.resume_from is not None:
            raise invalid("overwrite", f"true starts over, train.resume_from={self.resume_from} continues: pass "
                                       "one of them (to start over under the SLURM scripts, which always pass "
                                       "resume_from=auto, use a new output_dir)")
        return self


class EvalConfig(Section):
    every_steps: Optional[PositiveInt] = Field(None, description=(
        "validation every N steps, printed and logged to metrics.jsonl (null: only at the end)"))
    micro_batch_size: PositiveInt = Field(64, description="examples per process per evaluation batch")
    splits: Annotated[list[Literal["valid", "test"]], ListOrOne] = Field(
        default_factory=lambda: ["test"],
        description="splits evaluated at the end (test metrics are the top level of eval.json)")
    best_metric: Optional[str] = Field(None, description=(
        "validation metric that picks the best checkpoint, e.g. ndcg@10 (null: the last one)"))
    # Whether a larger best_metric is better. None: derived from the name, lower is better for loss, logloss,
    # rmse, mae, mse, perplexity and *_loss, higher for everything else (auc, ndcg@K, ...). See best_is_higher.
    greater_is_better: Optional[StrictBool] = Field(None, description=(
        "direction of best_metric; null: derived from its name (lower for loss, logloss, rmse, mae, mse, "
        "perplexity, *_loss)"))
    ks: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        default_factory=lambda: [10, 50],
        description="cutoffs K of the ranking metrics (ndcg@K, recall@K, hit@K, precision@K, map@K)")
    patience: Optional[PositiveInt] = Field(None, description=(
        "early stopping: stop after this many evaluations in a row without improving eval.best_metric "
        "(null: off); needs eval.every_steps and eval.best_metric"))

    @model_validator(mode="after")
    def _direction_needs_a_metric(self):
        if self.greater_is_better is not None and not self.best_metric:
            raise invalid("greater_is_better", "only applies with eval.best_metric; set eval.best_metric=NAME "
                                               "or drop eval.greater_is_better")
        if self.patience is not None and not (self.best_metric and self.every_steps):
            raise invalid("patience", "stops after evaluations without a better eval.best_metric: set "
                                      "eval.best_metric=NAME and eval.every_steps=N, or drop eval.patience")
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

    backend: Literal["exact", "faiss"] = Field("exact", description=(
        "exact, or faiss (approximate HNSW search for very large catalogs)"))
    histories: StrictBool = Field(True, description=(
        "keep known users' histories in the index (serving by user id without the data)"))


class RunConfig(Section):
    task: str = Field("ctr", description=(
        "what the model learns: ctr (click probability, BCE), rating (regression, MSE), retrieval (two "
        "towers, in-batch softmax), sequential (SASRec over item text vectors), mlm (domain-adaptive "
        "masked-LM pretraining); any name in the task registry"))
    output_dir: Annotated[str, Field(min_length=1)] = Field("runs/default", description=(
        "run directory: checkpoints, metrics.jsonl, eval.json, final/ (the export)"))
    seed: Int = Field(42, description="seed of sampling, shuffling and initialisation")
    model: Annotated[ModelConfig, _NULL_IS_DEFAULTS] = _section("the encoder and the task's model")
    data: Annotated[DataConfig, _NULL_IS_DEFAULTS] = _section(
        "the source, the split and how examples are rendered as text")
    train: Annotated[TrainConfig, _NULL_IS_DEFAULTS] = _section(
        "optimisation, precision, checkpoints, trackers and the distributed strategy")
    eval: Annotated[EvalConfig, _NULL_IS_DEFAULTS] = _section("validation during training and the final evaluation")
    index: Annotated[IndexConfig, _NULL_IS_DEFAULTS] = _section(
        "translrec index / serving: how item vectors are searched")
    source: Optional[str] = Field(default=None, exclude=True, description=(
        "where the config came from (set by the loader; not a key)"))

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
