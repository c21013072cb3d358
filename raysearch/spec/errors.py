"""Error wording: one line naming the file, the line and the key path, and how a pydantic
error or a failed check becomes one."""

import difflib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Key = tuple[Any, ...]  # a key path: mapping keys and list indices


class SpecError(Exception):
    """One clear line for the user: '<file>:<line>: <key.path>: <problem>' (line omitted when
    unknown)."""


class Problem(ValueError):
    """A failed check that knows which key below the model raising it is to blame: pydantic keeps
    the exception in the error's ctx, so the reported path can point at that key's line."""

    def __init__(self, path: Key, message: str) -> None:
        super().__init__(message)
        self.path = path


def hint(key: Any, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def listed(names: Sequence[Any]) -> str:
    return ", ".join(map(str, names))



def explain(err: ErrorDetails) -> tuple[Key, str]:
    """A pydantic error as (loc, one-line problem)."""
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx", {})
    if isinstance(ctx.get("error"), Problem):
        return loc + ctx["error"].path, str(ctx["error"])
    if kind == "missing":
        return loc, "missing required key"
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "union_tag_not_found":
        return loc, "missing key 'type' (int, float or categorical)"
    if kind == "union_tag_invalid":
        return loc + ("type",), f"unknown type {ctx['tag']!r} (int, float or categorical)"
    msg, value = err["msg"].removeprefix("Value error, "), err["input"]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "Input should be a mapping (key: value, ...)"  # not pydantic's class names
    if value is None or isinstance(value, (bool, int, float, str)):
        msg += f" (got {value!r})"
    return loc, msg


def validated(cls: type[BaseModel], values: dict[str, Any], prefix: Key,
               one_value: bool = False) -> BaseModel:
    """`values` through `cls` (strict: YAML gives real types, so `yes` is no number), or the
    first failure as a Problem at its key; at `prefix` itself when checking `one_value`."""
    try:
        return cls.model_validate(values, strict=True)
    except ValidationError as e:
        errors = [x for x in e.errors() if x["type"] != "missing"]
        if not errors:  # a required field left to `params`: not this check's business
            return cls.model_construct(**values)
        loc, msg = explain(errors[0])
        raise Problem(prefix if one_value else prefix + loc, msg) from None
