"""Broken search-space files, generated: whatever a file holds, `raysearch validate` and
`raysearch tune` answer with exit code 0 or 2, never a traceback; a 2 is one line naming the
file, and nothing is written. The commands run in this process (typer's runner), so
hypothesis can try hundreds of files in seconds; test_cli.py runs the same checks as a real
subprocess. And broken data files (a series CSV, a sequence set, a table): their loaders give splits
or one line naming the file."""

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

from raysearch.cli import app
from raysearch.data import DATASETS, DataError

VALID = {
    "name": "fuzzed",
    "model": "esn",
    "data": {"name": "mackey_glass", "horizon": 1},
    "objective": {"metric": "val_nrmse", "mode": "min"},
    "search": {"trials": 4, "sampler": "tpe", "seed": 0, "max_concurrent": 1},
    "scheduler": {"type": "asha", "max_t": 4, "grace_period": 1, "reduction_factor": 2},
    "resources": {"workers": 2, "cpus_per_worker": 1},
    "params": {
        "units": {"type": "int", "low": 50, "high": 500, "log": True},
        "ridge": {"type": "float", "low": 1e-9, "high": 1e-3, "log": True},
        "leak_rate": {"type": "float", "low": 0.1, "high": 1.0, "when": {"layers": 1}},
        "layers": {"type": "categorical", "choices": [1, 2]},
    },
    "fixed": {"washout": 50},
}

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["1e-9", "yes", "~", "0x1F", "1_000", ".inf", "-.nan", "2026-02-30"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def paths(doc, prefix=()):
    """Every key path of a document, mappings and lists alike."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from paths(value, prefix + (i,))


def at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw) -> tuple[str, bool]:
    """A valid spec with one thing changed: a value replaced by any other, a key deleted, or an
    unknown key added. Returns the YAML text and whether the change surely breaks the spec."""
    doc = copy.deepcopy(VALID)
    path = draw(st.sampled_from(list(paths(doc))[1:]))
    parent, key = at(doc, path[:-1]), path[-1]
    kind = draw(st.sampled_from(["replace", "delete", "add"]))
    if kind == "replace":
        parent[key] = draw(values)
        broken = False  # another valid value is possible (a different seed, say)
    elif kind == "delete":
        del parent[key]
        broken = False  # most keys have defaults
    else:
        target = parent if isinstance(parent, dict) else doc
        target[f"zz_{draw(st.text(max_size=6))}"] = draw(values)
        broken = True
    return yaml.safe_dump(doc, allow_unicode=True), broken


def nested(depth: int, kind: str) -> str:
    if kind == "flow lists":
        return "name: " + "[" * depth + "]" * depth + "\n"
    if kind == "flow mappings":
        return "name: " + "{a: " * depth + "1" + "}" * depth + "\n"
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "v: 1\n"


runner = CliRunner()


def check(folder: Path, content: bytes, command: str, surely_broken: bool) -> None:
    spec = folder / "space.yaml"
    spec.write_bytes(content)
    cwd = os.getcwd()
    os.chdir(folder)  # where `tune` would put mlflow.db and ray_results
    try:
        args = ["validate", "space.yaml"] if command == "validate" else [
            "tune", "--space", "space.yaml"]
        result = runner.invoke(app, args, env={"MLFLOW_TRACKING_URI": ""})
    finally:
        os.chdir(cwd)
    # an escaped exception is what a user would see as a traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        content[:300], result.exception)
    assert result.exit_code in (0, 2), (content[:300], result.output)
    if surely_broken or command == "tune":
        assert result.exit_code == 2, (content[:300], result.output)
    if result.exit_code == 2:
        line, = result.stderr.strip().splitlines()
        assert line.startswith("error: space.yaml"), line
    assert [p.name for p in folder.iterdir()] == ["space.yaml"]


@FUZZ
@given(case=mutated())
def test_one_change_to_a_valid_file(case, tmp_path_factory):
    text, broken = case
    check(tmp_path_factory.mktemp("f"), text.encode(), "validate", broken)


@FUZZ
@given(content=st.one_of(st.binary(max_size=400),
                         st.text(max_size=400).map(str.encode),
                         st.builds(lambda v: yaml.safe_dump(v).encode(), values)))
@pytest.mark.parametrize("command", ["validate", "tune"])
def test_garbage(content, command, tmp_path_factory):
    check(tmp_path_factory.mktemp("g"), content, command, surely_broken=True)


@settings(deadline=None, max_examples=8, derandomize=True)
@given(depth=st.integers(min_value=1, max_value=5000),
       kind=st.sampled_from(["flow lists", "flow mappings", "block mappings"]))
def test_deep_nesting(depth, kind, tmp_path_factory):
    check(tmp_path_factory.mktemp("n"), nested(depth, kind).encode(), "validate", True)


# Data files, generated: whatever a user's file holds, its loader gives splits or one DataError
# line naming the file; never another exception (a traceback).

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "x", "1e400", "2026-01-01T00:00:00",
                     "2026-13-01", "\"1,5\"", "1;2", "0x10"]),
    st.text(max_size=6))


@st.composite
def csv_series(draw) -> tuple[str, dict]:
    columns = draw(st.lists(st.sampled_from(["time", "a", "b", "c", ""]), min_size=1,
                            max_size=4))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(columns) + 1), max_size=60))
    text = "\n".join(",".join(row) for row in [columns, *rows])
    options = draw(st.fixed_dictionaries({}, optional={
        "target": st.lists(st.sampled_from(["a", "b", "zz"]), min_size=1, max_size=2),
        "inputs": st.lists(st.sampled_from(["a", "c"]), min_size=1, max_size=2),
        "time": st.sampled_from(["time", "a"]), "horizon": st.integers(1, 30),
        "mode": st.sampled_from(["direct", "generative"]), "warmup": st.integers(0, 50)}))
    return text, options


def loads_or_says_why(name: str, path: Path, options: dict) -> None:
    dataset = DATASETS[name]
    try:
        opts = dataset.options(path=str(path), **options)
    except ValueError:
        return  # options a spec would refuse (validate says so, with the key)
    try:
        splits, info = dataset.load(opts)
    except DataError as e:
        message = str(e)
        assert str(path) in message or path.name in message, message
        assert "\n" not in message, message
        return
    for x, y in splits.values():
        assert len(x) == len(y) > 0
        assert info.num_outputs >= 1


@FUZZ
@given(case=csv_series())
def test_a_series_file_loads_or_says_why(case, tmp_path_factory):
    text, options = case
    path = tmp_path_factory.mktemp("s") / "series.csv"
    path.write_text(text)
    loads_or_says_why("series", path, options)


arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64]),
               hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
               elements={"allow_nan": True, "allow_infinity": True}),
    hnp.arrays(np.int64, st.integers(0, 40), elements=st.integers(-3, 30)))


@FUZZ
@given(content=st.dictionaries(st.sampled_from(["x", "y", "lengths", "x_test", "y_test",
                                                "lengths_test", "other"]), arrays, max_size=6))
def test_a_sequence_set_file_loads_or_says_why(content, tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "set.npz"
    np.savez(path, **content)
    loads_or_says_why("sequences", path, {})


@st.composite
def csv_table(draw) -> tuple[str, dict]:
    columns = draw(st.lists(st.sampled_from(["a", "b", "c", "kind", ""]), min_size=1,
                            max_size=5))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(columns) + 1), max_size=40))
    text = "\n".join(",".join(row) for row in [columns, *rows])
    options = draw(st.fixed_dictionaries({"target": st.sampled_from(["kind", "a", "zz"])},
                                         optional={
        "inputs": st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3),
        "categorical": st.lists(st.sampled_from(["a", "b", "kind"]), max_size=2),
        "task": st.sampled_from(["classification", "regression"])}))
    return text, options


@FUZZ
@given(case=csv_table())
def test_a_table_file_loads_or_says_why(case, tmp_path_factory):
    text, options = case
    path = tmp_path_factory.mktemp("t") / "table.csv"
    path.write_text(text)
    loads_or_says_why("table", path, options)


@FUZZ
@given(content=st.dictionaries(st.sampled_from(["x", "y", "classes", "other"]), arrays,
                               max_size=4),
       task=st.sampled_from([None, "classification", "regression"]))
def test_a_table_folder_loads_or_says_why(content, task, tmp_path_factory):
    folder = tmp_path_factory.mktemp("f")
    for name, array in content.items():
        np.save(folder / f"{name}.npy", array)
    loads_or_says_why("table", folder, {"task": task} if task else {})
