import pytest

from tests.conftest import TINY
from translrec_dist.config import load_config
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
    base = "model:\n  tiny: {}\n"
    path = write(tmp_path, base + text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
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
