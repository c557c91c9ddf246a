import ast
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import translrec_dist.config
from tests.conftest import TINY
from translrec_dist.config.loader import load_config
from translrec_dist.config.schema import SYNTHETIC_ITEM_FIELDS, RunConfig, SyntheticConfig
from translrec_dist.data.synthetic import generate_synthetic
from translrec_dist.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_tiny_config_loads_with_defaults_filled():
    cfg = load_config(TINY)
    assert cfg.task == "ctr" and cfg.model.tiny.hidden_size == 64 and cfg.data.format == "synthetic"
    assert cfg.train.grad_accum == 1  # default


def test_overrides_are_yaml_scalars_including_exponent_without_dot():
    cfg = load_config(TINY, ["train.lr=3e-5", "data.max_length=64", "train.report_to=[tensorboard]",
                             "train.max_grad_norm=null", "train.precision=no"])
    assert cfg.train.lr == pytest.approx(3e-5) and cfg.data.max_length == 64
    assert cfg.train.report_to == ["tensorboard"] and cfg.train.max_grad_norm is None
    assert cfg.train.precision == "no"  # YAML reads a bare `no` as false


def test_switch_tiny_config_to_a_checkpoint(tmp_path):
    cfg = load_config(TINY, ["model.tiny=null", f"model.name_or_path={tmp_path}"])
    assert cfg.model.tiny is None and cfg.model.name_or_path == str(tmp_path)


@pytest.mark.parametrize("text, key", [
    ("train:\n  lrr: 0.1\n", "train.lrr"),                       # unknown key, with a suggestion
    ("train:\n  lr: fast\n", "train.lr"),                         # wrong type
    ("train:\n  micro_batch_size: 0\n", "train.micro_batch_size"),  # impossible value
    ("task: ranking\n", "task"),                                  # not a choice
    ("data:\n  max_length: 4096\n", "data.max_length"),           # exceeds tiny max_position_embeddings
])
def test_errors_name_the_key_and_the_file(tmp_path, text, key):
    from translrec_dist.program import load_run  # the task's name is checked where the program is assembled

    base = "model:\n  tiny: {}\n"
    path = write(tmp_path, base + text)
    with pytest.raises(ConfigError) as e:
        load_run(path)
    assert key in str(e.value) and str(path) in str(e.value)


def test_unknown_key_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean train.lr"):
        load_config(write(tmp_path, "model:\n  tiny: {}\ntrain:\n  lrr: 0.1\n"))


def test_model_source_must_be_exactly_one(tmp_path):
    with pytest.raises(ConfigError, match="model.tiny=null"):
        load_config(write(tmp_path, "model:\n  tiny: {}\n  name_or_path: bert-base-uncased\n"))
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(write(tmp_path, "task: ctr\n"))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [1,\n"))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(TINY, ["train.lr"])


def test_data_path_required_for_file_formats():
    with pytest.raises(ConfigError, match="data.path"):
        load_config(TINY, ["data.format=interactions"])


# ---------------------------------------------------------------- malformed configs (issue 13): one table

TINY_BASE = "model:\n  tiny: {}\n"  # lines 1-2 of every file below


@pytest.mark.parametrize("text, overrides, key, fragments", [
    # a key given twice: YAML would keep the last one silently
    ("train:\n  lr: 0.1\n  lr: 0.2\n", [], "train.lr", ["duplicate key", "line 5", "line 4"]),
    ("train: {}\neval: {}\ntrain: {}\n", [], "train", ["duplicate key", "line 5", "line 3"]),
    # non-finite numbers
    ("train:\n  lr: .inf\n", [], "train.lr", ["finite", "inf"]),
    ("train:\n  epochs: .nan\n", [], "train.epochs", ["finite", "nan"]),
    ("data:\n  positive_threshold: -.inf\n", [], "data.positive_threshold", ["finite"]),
    ("", ["train.lr=inf"], "train.lr", ["finite"]),
    # a section that is not a mapping, plus a dotted override: never silently replaced by defaults
    ("train: [1, 2]\n", ["train.lr=0.1"], "train.lr", ["train is a list", "not a mapping"]),
    ("eval: 5\n", ["eval.every_steps=3"], "eval.every_steps", ["eval is an int", "not a mapping"]),
    ("train: [1, 2]\n", [], "train", ["expected a mapping, got list"]),
    # attention heads
    ("", ["model.tiny.num_attention_heads=0"], "model.tiny.num_attention_heads", ["must be >= 1, got 0"]),
    ("", ["model.tiny.hidden_size=63"], "model.tiny.hidden_size", ["not divisible by num_attention_heads=2"]),
    # templates: syntax and field names checked at load time, not while reading data
    ("data:\n  item_text: '{title'\n", [], "data.item_text", ["not a valid template", "{{ or }}"]),
    ("data:\n  item_text: 'title}'\n", [], "data.item_text", ["not a valid template"]),
    ("data:\n  item_text: '{year}'\n", [], "data.item_text", ["{year}", "title, category, description"]),
    ("data:\n  item_text: '{}'\n", [], "data.item_text", ["must be a column name"]),
    ("data:\n  item_text: '{title:d}'\n", [], "data.item_text", ["cannot be rendered"]),
    ("data:\n  history_template: '{foo} {text}'\n", [], "data.history_template", ["{foo}", "only field is {text}"]),
    ("data:\n  history_template: '{text'\n", [], "data.history_template", ["not a valid template"]),
    ("", ["data.item_text={title}"], "data.item_text", ["expected a string", "quote"]),
    # an empty split that evaluation needs (text_label splits by fraction)
    ("data:\n  format: text_label\n  path: x.csv\n  valid_fraction: 0\n", ["eval.every_steps=5"],
     "data.valid_fraction", ["split is empty"]),
    ("data:\n  format: text_label\n  path: x.csv\n  test_fraction: 0\n", [], "data.test_fraction", ["test split"]),
    # others
    ("eval:\n  greater_is_better: false\n", [], "eval.greater_is_better", ["eval.best_metric"]),
    ("train:\n  progress_bar: 1\n", [], "train.progress_bar", ["true or false"]),
    ("train:\n  micro_batch_size: true\n", [], "train.micro_batch_size", ["expected an integer"]),
    ("train:\n  report_to: [tensorboard, tensorbord]\n", [], "train.report_to[1]", ["Set e.g. train.report_to="]),
    ("train:\n  max_steps: 0\n", [], "train.max_steps", ["must be >= 1 or null"]),
    ("model:\n  head_dropout: 1.0\n", [], "model", ["duplicate key"]),
    ("train: !!python/object/apply:os.system ['echo pwned']\n", [], "", ["not valid YAML"]),  # still safe_load
])
def test_malformed_config_is_a_config_error(tmp_path, text, overrides, key, fragments):
    path = write(tmp_path, TINY_BASE + text)
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    message = str(e.value)
    assert key in message and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def float_fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        nested = [a for a in (field.annotation, *typing.get_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            yield from float_fields(nested[0], f"{prefix}{name}.")
        elif "float" in str(field.annotation) or field.annotation is float:
            yield f"{prefix}{name}"


FLOAT_KEYS = sorted(float_fields(RunConfig))


def test_every_float_field_is_found():
    assert {"train.lr", "train.max_grad_norm", "data.positive_threshold", "model.tiny.hidden_dropout_prob",
            "model.lora.dropout", "model.temperature"} <= set(FLOAT_KEYS) and len(FLOAT_KEYS) >= 15


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_for_every_float_field(key, value):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: must be a finite number.*tiny_cpu\.yaml"):
        load_config(TINY, [f"{key}={value}"])


def test_yaml_merge_keys_are_not_duplicates_and_null_sections_are_defaults(tmp_path):
    text = "model:\n  tiny:\n    <<: {hidden_size: 32, num_attention_heads: 4}\n    hidden_size: 64\neval:\ntrain:\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.model.tiny.hidden_size == 64 and cfg.model.tiny.num_attention_heads == 4
    assert cfg.eval.splits == ["test"] and cfg.train.lr == pytest.approx(5e-5)


def test_synthetic_item_fields_match_the_generator():
    _, items = generate_synthetic(SyntheticConfig(num_users=3, num_items=4, num_categories=2))
    assert [c for c in items.columns if c != "item_id"] == list(SYNTHETIC_ITEM_FIELDS)
    cfg = load_config(TINY, ["data.item_text='{title} / {category}: {description}'"])
    assert cfg.data.item_text == "{title} / {category}: {description}"


# ---------------------------------------------------------------- metric direction (issue 12)

@pytest.mark.parametrize("metric, higher", [
    ("auc", True), ("ndcg@10", True), ("recall@50", True), ("mrr", True),
    ("logloss", False), ("rmse", False), ("mae", False), ("loss", False), ("mlm_loss", False), ("perplexity", False),
])
def test_best_metric_direction_is_derived_from_its_name(metric, higher):
    assert load_config(TINY, [f"eval.best_metric={metric}"]).eval.best_is_higher is higher


def test_greater_is_better_overrides_the_derived_direction():
    assert load_config(TINY, ["eval.best_metric=rmse", "eval.greater_is_better=true"]).eval.best_is_higher is True
    assert load_config(TINY, ["eval.best_metric=auc", "eval.greater_is_better=false"]).eval.best_is_higher is False


# ---------------------------------------------------------------- the package's place in the import graph

ALLOWED = ("translrec_dist.errors", "translrec_dist.models.pretrained", "translrec_dist.safe_io")


def test_config_imports_only_itself_errors_and_the_pretrained_resolver():
    """Loading a config is pure (issue 18): config imports itself, errors and the offline resolver of
    ``model.name_or_path`` (which imports nothing of ours); never tasks, models or training. The task's checks
    run in ``translrec_dist.program``. Imports inside functions count."""
    package = Path(translrec_dist.config.__file__).parent
    for path in [*package.glob("*.py"), package.parent / "errors.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("translrec_dist"):
                    assert path.name != "errors.py" and (
                        name.startswith("translrec_dist.config") or name in ALLOWED), (path, name)


def test_overwrite_and_resume_from_exclude_each_other():
    with pytest.raises(ConfigError, match=r"train\.overwrite.*resume_from=auto"):
        load_config(TINY, ["train.overwrite=true", "train.resume_from=auto"])
    assert load_config(TINY, ["train.overwrite=true"]).train.overwrite is True
