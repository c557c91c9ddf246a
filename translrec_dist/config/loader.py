"""YAML -> RunConfig: read the file, apply dotted overrides, validate; and write configs back out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from translrec_dist.config.messages import describe, dotted
from translrec_dist.config.schema import RunConfig
from translrec_dist.errors import ConfigError
from translrec_dist.safe_io import write_text

_MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` semantics, except that a key given twice in one mapping is an error: plain YAML
    keeps the last value silently, so an edited config would train with the setting the user did not mean."""

    def __init__(self, stream, where: str):
        super().__init__(stream)
        self.where = where

    def read(self) -> Any:
        try:
            node = self.get_single_node()
            if node is None:
                return None
            self.check_unique_keys(node, (), set())
            return self.construct_document(node)
        finally:
            self.dispose()

    def check_unique_keys(self, node, path: tuple, visited: set) -> None:
        if id(node) in visited:  # an alias points back at a node already checked (or at itself)
            return
        visited.add(id(node))
        if isinstance(node, MappingNode):
            first_line: dict[tuple, int] = {}
            for key_node, value_node in node.value:
                key = (key_node.tag, key_node.value) if isinstance(key_node, ScalarNode) else None
                if key is not None and key_node.tag != _MERGE_TAG:
                    line = key_node.start_mark.line + 1
                    if key in first_line:
                        raise ConfigError(
                            f"{self.where}: line {line}: duplicate key '{dotted((*path, key_node.value))}' (first "
                            f"given at line {first_line[key]}); YAML would silently keep the last one. Remove one")
                    first_line[key] = line
                self.check_unique_keys(value_node, (*path, key_node.value if key else "?"), visited)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self.check_unique_keys(item, (*path, i), visited)


def parse_yaml(text: str, where: str) -> Any:
    return UniqueKeyLoader(text, where).read()


def load_config(path: str | Path | None = None, overrides: list[str] | tuple | Mapping[str, Any] = ()) -> RunConfig:
    """Read YAML (or start from defaults), apply dotted overrides, build and validate.

    ``overrides``: ``["train.lr=3e-5", ...]`` as on the command line (values parsed as YAML), or a mapping
    ``{"train.lr": 3e-5, "eval.ks": [10, 20]}`` whose values are taken as they are (the Python API).

    Only the config itself is checked here (pure: nothing of tasks, models or training is imported); the task's
    own checks run where the program is assembled (``translrec_dist.program.load_run``), and
    ``translrec_dist.training.preflight`` checks the files and the environment it names before a run starts.
    """
    raw: Any = {}
    where = str(path) if path else "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}. Pass the path of a YAML file, e.g. configs/tiny_cpu.yaml")
        try:
            raw = parse_yaml(p.read_text(encoding="utf-8"), where) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (model, data, train, eval)")
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            set_dotted(raw, str(key), value, f"override {key}", where)
    else:
        for item in overrides:
            apply_override(raw, item, where)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe(e, RunConfig, where)) from None
    cfg.source = where
    from translrec_dist.models.pretrained import resolve_pretrained  # imports nothing of ours

    cfg.model.name_or_path = resolve_pretrained(cfg.model.name_or_path)
    return cfg


def apply_override(raw: dict, item: str, where: str = "the config") -> None:
    """``train.lr=3e-5`` -> raw["train"]["lr"] = 3e-5 (the value is parsed as a YAML scalar)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (example: train.lr=3e-5)")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key; write e.g. train.lr=3e-5")
    try:
        parsed = parse_yaml(value, f"override {item}") if value != "" else None
    except yaml.YAMLError:
        parsed = value
    set_dotted(raw, key, parsed, f"override {item}", where)


def set_dotted(raw: dict, key: str, value: Any, what: str, where: str = "the config") -> None:
    """raw["train"]["lr"] = value for key ``train.lr``; ``what`` names the override in errors."""
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{what} has an empty key; write e.g. train.lr=3e-5")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:  # absent or null: the override starts the section
            child = node[part] = {}
        elif not isinstance(child, dict):
            # Replacing it with {} would silently drop what the file says (a list, a scalar) for defaults.
            section, kind = ".".join(parts[:depth + 1]), type(child).__name__
            article = "an" if kind[0] in "aeiou" else "a"
            raise ConfigError(f"{what}: {section} is {article} {kind} in {where}, not a mapping, "
                              f"so {key} cannot be set inside it. Write {section} as a mapping (key: value lines)")
        node = child
    node[parts[-1]] = value


def export_config(cfg: RunConfig) -> RunConfig:
    """The config written beside an export: a plain model has no resume point, no training strategy (its
    DeepSpeed JSON may not travel) and no adapters (LoRA is merged on export)."""
    train = cfg.train.model_copy(update={"resume_from": None, "distributed": "ddp", "offload": "none",
                                         "deepspeed_config": None})
    return cfg.model_copy(update={"train": train, "model": cfg.model.model_copy(update={"lora": None})})


def dump_config(cfg: RunConfig, path: Path, root: Path | None = None) -> None:
    """``path`` inside ``root`` (default: its folder), never written through a link (``safe_io``)."""
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False), root or Path(path).parent)
