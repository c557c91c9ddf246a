"""Field types shared by the config sections, and the error that a cross-field check raises.

YAML hands us bools, ints, floats and strings. Pydantic's lax mode would read ``true`` as 1 for a number;
these types refuse that, as the hand-written loader did, while still reading ``3e-5`` (a string in YAML 1.1).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

CHECK_ERROR = "config_check"  # the error type of every cross-field check; loader.py reads its ``key``


def invalid(key: str, message: str) -> PydanticCustomError:
    """A failed cross-field check. ``key`` is relative to the section that checks it (``hidden_size`` inside
    model.tiny), or a dotted path from the top in RunConfig's own checks."""
    return PydanticCustomError(CHECK_ERROR, "{message}", {"message": message, "key": key})


def _refuse_bool(expected: str):
    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError("wrong_type", "expected {expected}", {"expected": expected})
        return value

    return BeforeValidator(check)


def _one_string_is_a_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value  # train.report_to=tensorboard


def _yaml_no(value: Any) -> Any:
    return "no" if value is False else value  # YAML 1.1 reads a bare `no` as false (train.precision=no)


Int = Annotated[int, _refuse_bool("an integer")]
Float = Annotated[float, _refuse_bool("a number")]
PositiveInt = Annotated[Int, Field(ge=1)]
NonNegativeInt = Annotated[Int, Field(ge=0)]
PositiveFloat = Annotated[Float, Field(gt=0)]
Dropout = Annotated[Float, Field(ge=0, lt=1)]
Fraction = Annotated[Float, Field(ge=0, lt=1)]
ListOrOne = BeforeValidator(_one_string_is_a_list)
YamlNo = BeforeValidator(_yaml_no)
