"""The configuration documents itself: every schema field has a description, `translrec keys` lists every key,
README's table is the generated one, and every subcommand's --help has a summary, examples and defaults."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from translrec_dist.cli import PLUMBING, build_parser, main
from translrec_dist.config import schema
from translrec_dist.config.keys import config_keys, format_markdown, readme_with_table
from translrec_dist.config.schema import RunConfig

SECTIONS = [RunConfig, schema.ModelConfig, schema.TinyBertConfig, schema.LoraConfig, schema.SequenceConfig,
            schema.DataConfig, schema.SyntheticConfig, schema.TrainConfig, schema.EvalConfig, schema.IndexConfig]


def test_every_schema_field_has_a_description():
    missing = [f"{cls.__name__}.{name}" for cls in SECTIONS for name, f in cls.model_fields.items()
               if not (f.description or "").strip()]
    assert not missing


def leaf_paths(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= leaf_paths(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_keys_list_every_key_of_a_full_config(tiny_cfg):
    """A config with the optional sections set (model.tiny, model.lora) has exactly the listed leaf keys."""
    cfg = tiny_cfg("model.lora.r=4")
    listed = {k.name for k in config_keys()}
    assert leaf_paths(cfg.to_dict()) <= listed
    assert {"model.tiny", "model.lora", "eval.patience", "train.progress_bar", "train.deterministic",
            "model.head_dropout", "data.resample", "train.mlm_probability"} <= listed
    defaults = {k.name: k.default for k in config_keys()}
    assert defaults["train.lr"] == "5e-05" and defaults["eval.ks"] == "[10, 50]" and defaults["model.tiny"] == "null"


def test_keys_command_prints_every_key(capsys):
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    for key in config_keys():
        assert re.search(rf"^{re.escape(key.name)}  \(", out, flags=re.M), key.name
    assert "train.lr  (float (> 0); default 5e-05)" in out


def test_readme_key_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    assert readme_with_table(readme) == readme, (
        "README's config key table is stale: run python -m translrec_dist.config.keys --readme README.md")
    assert format_markdown(config_keys()) in readme


def test_readme_task_row_names_every_registered_task():
    from translrec_dist.tasks.registry import task_names

    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `task` |"))
    for name in task_names():
        assert re.search(rf"\b{name}\b", row), name


def test_table_generation_fails_without_markers():
    with pytest.raises(ValueError, match="markers"):
        readme_with_table("# no table here\n")


def subcommands() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_subcommand_has_a_summary_and_examples():
    for name, parser in subcommands().items():
        help_text = parser.format_help()
        assert parser.description and parser.description.endswith("."), name
        assert "examples:\n  translrec " in help_text, name
        assert "retrieval export" not in help_text, name


def test_defaults_show_in_help():
    commands = subcommands()
    assert "(default: 10)" in commands["recommend"].format_help()
    serve = commands["serve"].format_help()
    assert "(default: 8000)" in serve and "(default: 127.0.0.1)" in serve
    assert "(default: None)" not in serve and "(default: False)" not in commands["recommend"].format_help()


def test_plumbing_commands_are_listed_apart():
    top = build_parser().format_help()
    user_part, plumbing_part = top.split("plumbing commands")
    for name in PLUMBING:
        assert name not in user_part and f"  {name}" in plumbing_part
    for name in ("train", "recommend", "serve", "keys"):
        assert re.search(rf"^    {name}\b", user_part, flags=re.M), name


def test_keys_output_survives_a_closed_pipe():
    proc = subprocess.run(f"{sys.executable} -m translrec_dist keys | head -1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.startswith("task") and "Traceback" not in proc.stderr
