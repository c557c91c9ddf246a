"""Every config key with its type, default and description, read from the schema (``translrec keys``).

README's key table is this module's output (``python -m translrec_dist.config.keys --readme README.md`` rewrites
it between its markers; a test fails when they differ), so the documentation cannot drift from the schema.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from translrec_dist.config.schema import RunConfig

START, END = "<!-- config keys: start (python -m translrec_dist.config.keys --readme README.md) -->", \
    "<!-- config keys: end -->"
_BOUNDS = ((annotated_types.Ge, ">="), (annotated_types.Gt, ">"), (annotated_types.Le, "<="),
           (annotated_types.Lt, "<"), (annotated_types.MinLen, "length >="))


@dataclass(frozen=True)
class Key:
    name: str
    type: str
    default: str
    description: str


def config_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[Key]:
    """Depth first, in schema order; a section that may be null (``model.tiny``) is a key and so are its fields."""
    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:  # set by the loader, not by users (RunConfig.source)
            continue
        section = _section_class(field.annotation)
        dotted = f"{prefix}{name}"
        if section is None or _optional(field.annotation):
            keys.append(Key(dotted, type_name(field), default_text(field), field.description or ""))
        if section is not None:
            keys.extend(config_keys(section, f"{dotted}."))
    return keys


def type_name(field: FieldInfo) -> str:
    text = _type_text(field.annotation)
    bounds = [f"{sign} {getattr(m, next(iter(m.__dataclass_fields__)))}" for m in field.metadata
              for cls, sign in _BOUNDS if isinstance(m, cls)]
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _type_text(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = " or ".join(_type_text(a) for a in rest)
        return f"{inner} or null" if len(rest) < len(args) else inner
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "section"
    return {int: "int", float: "float", bool: "bool", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "(section)" if isinstance(value, dict) and not value else json.dumps(value)
    value = field.default
    if value is PydanticUndefined:
        return "required"
    return "null" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _section_class(tp: Any) -> type[BaseModel] | None:
    if typing.get_origin(tp) is typing.Annotated:
        return _section_class(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [c for a in typing.get_args(tp) if (c := _section_class(a)) is not None]
        return found[0] if found else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def format_text(keys: list[Key]) -> str:
    return "\n".join(f"{k.name}  ({k.type}; default {k.default})\n    {k.description}" for k in keys)


def format_markdown(keys: list[Key]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = [f"| `{k.name}` | {cell(k.type)} | `{k.default}` | {cell(k.description)} |" for k in keys]
    return "\n".join(["| key | type | default | description |", "| --- | --- | --- | --- |", *rows])


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the generated table."""
    if START not in readme or END not in readme:
        raise ValueError(f"README has no {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{format_markdown(config_keys())}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m translrec_dist.config.keys",
                                description="Write README's config key table from the schema.")
    p.add_argument("--readme", type=Path, required=True, help="the README whose table to rewrite")
    args = p.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = readme_with_table(text)
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        print(f"rewrote the key table in {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
