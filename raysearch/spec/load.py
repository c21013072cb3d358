"""From a file and the command line's overrides (`--set key.path=value`, the flags) to a
validated Spec, or one SpecError line."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from raysearch.spec.errors import Key, SpecError, explain, hint, listed
from raysearch.spec.params import PARAM_TYPES
from raysearch.spec.schema import Spec
from raysearch.spec.sections import Champion, Objective, Resources, Scheduler, Search
from raysearch.spec.yaml_lines import Doc, Loader, dotted, parse, read_text

_CLI: dict[str, tuple[Key, str]] = {
    "trials": (("search", "trials"), "--trials"),
    "workers": (("resources", "workers"), "--workers"),
    "gpus_per_worker": (("resources", "gpus_per_worker"), "--gpus-per-worker"),
    "max_concurrent": (("search", "max_concurrent"), "--max-concurrent"),
    "name": (("name",), "--name"),
}


def _put(doc: Doc, path: Key, value: Any, origin: str) -> None:
    node = doc.data
    for i, key in enumerate(path[:-1]):
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            raise SpecError(f"{doc.file} (from {origin}): {dotted(path[:i + 1])}: is not a "
                            f"mapping, so it has no key {dotted(path[i + 1:])!r}")
        node = node[key]
    node[path[-1]] = value
    doc.origins[path] = origin
    # what the file had there is gone: its lines must not locate errors in the new value
    doc.lines = {key: line for key, line in doc.lines.items() if key[:len(path)] != path}


def _apply_set(doc: Doc, item: str) -> None:
    key, eq, text = item.partition("=")
    path = tuple(key.strip().split("."))
    if not eq or not all(path):
        raise SpecError(f"--set {item!r}: expected key.path=value, e.g. search.trials=20")
    try:
        value = yaml.load(text, Loader=Loader)  # typed like the file: 3 is an int, 1e-3 a float
    except yaml.YAMLError as e:
        raise SpecError(f"--set {item!r}: the value is not valid YAML: "
                        f"{str(e).splitlines()[0]}") from None
    _put(doc, path, value, "--set")


def _check_keys(doc: Doc) -> None:
    """Unknown keys, with a hint for typos (pydantic would only say 'extra inputs')."""
    sections = {"": Spec, "objective": Objective, "search": Search, "scheduler": Scheduler,
                "resources": Resources, "champion": Champion}
    for section, cls in sections.items():
        path = (section,) if section else ()
        mapping = doc.data.get(section) if section else doc.data
        known = [k for k in cls.model_fields if k != "source"]
        for key in mapping if isinstance(mapping, dict) else ():
            if key not in known:
                raise doc.error(path + (key,), f"unknown key{hint(key, known)} "
                                f"(known: {listed(known)})")
    params = doc.data.get("params")
    for name, param in params.items() if isinstance(params, dict) else ():
        kind = param.get("type") if isinstance(param, dict) else None
        known = list(PARAM_TYPES[kind].model_fields) if str(kind) in PARAM_TYPES else []
        for key in param if known else ():
            if key not in known:
                raise doc.error(("params", name, key), f"unknown key for a {kind} param"
                                f"{hint(key, known)} (known: {listed(known)})")


def _clean(data: Any, loc: Key) -> Key:
    """A pydantic loc as a key path of the file: without union tags ('float') and '[key]'."""
    path: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("type") == part:
            continue
        if part == "[key]":
            continue
        if isinstance(data, dict) and part == 0:  # one mapping where a list of them may be
            continue
        path.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(path)


_OPTIONAL = ("search", "scheduler", "resources", "params", "fixed", "constraints", "champion")


def _validate(doc: Doc, source: Path) -> Spec:
    _check_keys(doc)
    # an empty section (`fixed:` with nothing under it) means its default
    raw = {k: v for k, v in doc.data.items() if v is not None or k not in _OPTIONAL}
    if isinstance(raw.get("data"), dict):
        options = dict(raw["data"])
        raw["data"] = {"name": options.pop("name")} if "name" in options else {}
        raw["data"]["options"] = options
    try:
        return Spec.model_validate({**raw, "source": source}, strict=True)
    except ValidationError as e:
        loc, problem = explain(e.errors()[0])
        raise doc.error(_clean(doc.data, loc), problem) from None


def load_spec(path: str | Path, overrides: Sequence[str] = (), **cli: Any) -> Spec:
    """Read, override (`--set key.path=value` strings, then the CLI flags in `cli`, None meaning
    not given) and validate a search-space file. Raises SpecError."""
    try:
        doc = parse(str(path), read_text(str(path)))
        for item in overrides:
            _apply_set(doc, item)
        for flag, value in cli.items():
            if flag not in _CLI:
                raise TypeError(f"load_spec() got an unexpected keyword argument {flag!r}")
            if value is not None:
                key, origin = _CLI[flag]
                _put(doc, key, value, origin)
        return _validate(doc, Path(path))
    except RecursionError:  # YAML's parser and pydantic recurse once per level
        raise SpecError(f"{path}: nested too deeply to be a search space") from None

