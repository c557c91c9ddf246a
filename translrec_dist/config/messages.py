"""Pydantic's ValidationError -> the config error users read: the dotted key, the file, and the fix.

``train.lr: expected a number, got 'fast' (configs/x.yaml). Fix the value or override it: train.lr=...``
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Optional

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from translrec_dist.config.fields import CHECK_ERROR

_EXPECTED = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "float_parsing": "a number", "float_type": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list", "dict_type": "a mapping",
}
_MAPPING = ("model_type", "model_attributes_type")
_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def describe(error: ValidationError, root: type[BaseModel], where: str) -> str:
    """Every problem, one per line, the first one first (fixing it may clear the others)."""
    problems = sorted(error.errors(include_url=False), key=lambda p: p["type"] != "extra_forbidden")  # typos first
    lines = [_one(problem, root, where) for problem in problems]
    return "\n".join(lines[:1] + [f"also: {line}" for line in lines[1:]])


def dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _one(problem: dict, root: type[BaseModel], where: str) -> str:
    loc, kind, ctx = problem["loc"], problem["type"], problem.get("ctx") or {}
    value = problem.get("input")
    key = dotted(loc)
    field_key = dotted(tuple(p for p in loc if not isinstance(p, int)))  # eval.ks for eval.ks[0]
    fix = f"Fix the value or override it: {field_key}=..."
    if kind == CHECK_ERROR:
        full = ".".join(p for p in (key, ctx["key"]) if p)
        return f"{full}: {ctx['message']} ({where})"
    if kind == "extra_forbidden":
        return _unknown_key(root, loc, where)
    if kind in _MAPPING or (kind == "dict_type" and value is not None):
        return f"{key or 'config'}: expected a mapping, got {type(value).__name__} ({where})"
    if kind in _EXPECTED or kind == "wrong_type":
        if value is None:
            return f"{key}: a value is required, got null ({where})"
        expected = ctx.get("expected") if kind == "wrong_type" else _EXPECTED[kind]
        if kind == "string_type" and isinstance(value, (dict, list)):  # data.item_text={title} on a command line
            fix = f"YAML reads {{...}} and [...] as a mapping or a list; quote the text: {field_key}='\"...\"'"
        return f"{key}: expected {expected}, got {value!r} ({where}). {fix}"
    if kind == "literal_error":
        choices = _literal_choices(_field(root, loc)) or [ctx.get("expected", "")]
        list_item = isinstance(loc[-1], int)
        example = f"{field_key}=[{choices[0]}]" if list_item else f"{key}={choices[0]}"
        return f"{key}: {value!r} is not one of {', '.join(map(str, choices))} ({where}). Set e.g. {example}"
    if kind == "finite_number":
        return f"{key}: must be a finite number, got {value!r} ({where}). {fix}"
    if kind in _BOUNDS:
        field = _field(root, loc)
        bounds = _bounds_text(_constraints(field)) if field is not None else problem["msg"]
        or_null = " or null" if field is not None and not isinstance(loc[-1], int) and _optional(field) else ""
        return f"{key}: must be {bounds}{or_null}, got {value!r} ({where}). {fix}"
    if kind == "too_short":
        return f"{key}: must not be empty ({where})"
    return f"{key}: {problem['msg']} ({where})"


def _unknown_key(root: type[BaseModel], loc: tuple, where: str) -> str:
    key, name = dotted(loc), str(loc[-1])
    parent = _model_at(root, loc[:-1])
    names = sorted(n for n in (parent.model_fields if parent else {}) if n != "source")
    prefix = dotted(loc[:-1]) + "." if len(loc) > 1 else ""
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {prefix}{close[0]}?" if close else f" Known keys: {', '.join(names)}."
    return f"unknown key '{key}' ({where}).{hint}"


def _model_in(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], path: tuple) -> Optional[type[BaseModel]]:
    model: Optional[type[BaseModel]] = root
    for part in path:
        if model is None or isinstance(part, int) or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model


def _field(root: type[BaseModel], loc: tuple) -> Optional[FieldInfo]:
    """The field a problem is about; for a list item, the list's field."""
    names = list(loc)
    while names and isinstance(names[-1], int):
        names.pop()
    parent = _model_at(root, tuple(names[:-1])) if names else None
    return parent.model_fields.get(names[-1]) if parent is not None else None


def _walk(obj: Any):
    """Every annotation and piece of metadata inside a field (through Optional, Annotated and list)."""
    yield obj
    if isinstance(obj, FieldInfo):
        for meta in obj.metadata:
            yield from _walk(meta)
        yield from _walk(obj.annotation)
    elif typing.get_origin(obj) is typing.Annotated:
        yield from _walk(obj.__origin__)
        for meta in obj.__metadata__:
            yield from _walk(meta)
    elif typing.get_origin(obj) is not Literal:
        for arg in typing.get_args(obj):
            yield from _walk(arg)


def _literal_choices(field: Optional[FieldInfo]) -> list:
    for item in _walk(field) if field is not None else ():
        if typing.get_origin(item) is Literal:
            return list(typing.get_args(item))
    return []


def _constraints(field: FieldInfo) -> dict:
    found = {}
    for item in _walk(field):
        for name, cls in (("gt", annotated_types.Gt), ("ge", annotated_types.Ge), ("lt", annotated_types.Lt),
                          ("le", annotated_types.Le)):
            if isinstance(item, cls):
                found[name] = getattr(item, name)
    return found


def _bounds_text(c: dict) -> str:
    low = ("(", c["gt"]) if "gt" in c else ("[", c["ge"]) if "ge" in c else None
    high = (")", c["lt"]) if "lt" in c else ("]", c["le"]) if "le" in c else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>' if low[0] == '(' else '>='} {low[1]}"
    return f"{'<' if high[0] == ')' else '<='} {high[1]}"


def _optional(field: FieldInfo) -> bool:
    annotation = field.annotation
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation)
