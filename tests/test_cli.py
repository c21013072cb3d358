"""The command line as a user meets it: bad input exits 2 with one line, starts and writes
nothing; the ready spaces are found from any folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_sequences, write_series, write_table


def raysearch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raysearch", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "MLFLOW_TRACKING_URI": ""})


BROKEN = {
    "unknown hyperparameter": ("params:\n  unitz: {type: int, low: 1, high: 9}\n", "params.unitz"),
    "empty range": ("params:\n  units: {type: int, low: 9, high: 9}\n", "params.units"),
    "metric not reported": ("objective: {metric: val_accuracy, mode: max}\n", "objective.metric"),
    "typo in a section": ("serach: {trials: 3}\n", "serach"),
}
HEAD = "name: t\nmodel: esn\ndata: {name: mackey_glass}\n"
OBJECTIVE = "objective: {metric: val_nrmse, mode: min}\n"


# `tune` checks its file as `validate` does (test_fuzz.py runs both on hundreds of files, in
# this process): one case of it here, as a real process
@pytest.mark.parametrize("command, case", [*(("validate", case) for case in BROKEN),
                                           ("tune", "metric not reported")])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, command, tmp_path):
    body, key = BROKEN[case]
    (tmp_path / "space.yaml").write_text(HEAD + ("" if "objective" in body else OBJECTIVE) + body)

    run = raysearch(command, *(["--space"] if command == "tune" else []), "space.yaml",
                    cwd=tmp_path)

    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    line, = run.stderr.strip().splitlines()
    assert line.startswith("error: space.yaml:") and key in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]  # no mlflow.db, no results


def test_ready_spaces_are_found_from_any_folder(tmp_path):
    run = raysearch("validate", "esn", cwd=tmp_path)  # the other spellings: test_spec.py
    assert run.returncode == 0, run.stderr
    assert "esn on mackey_glass" in run.stdout
    listing = raysearch("spaces", cwd=tmp_path)
    assert "esn" in listing.stdout and "cnn" in listing.stdout


def test_pulling_a_model_that_does_not_exist_is_a_clear_error(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = raysearch("pull", "nobody@champion", "--out", "m", "--tracking-uri", uri, cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "nobody" in run.stderr


@pytest.mark.parametrize("command", ["validate", "tune"])
def test_a_bad_data_file_exits_2_with_one_line_before_anything_starts(command, tmp_path):
    (tmp_path / "series.csv").write_text("time,load\n0,1.5\n1,1.7\n2,n/a\n")
    (tmp_path / "space.yaml").write_text(
        "name: t\nmodel: esn\ndata: {name: series, path: series.csv, target: [load]}\n"
        + OBJECTIVE)

    run = raysearch(command, *(["--space"] if command == "tune" else []), "space.yaml",
                    cwd=tmp_path)

    assert run.returncode == 2 and "Traceback" not in run.stderr
    line, = run.stderr.strip().splitlines()
    assert line == "error: series.csv:4: column 'load': 'n/a' is not a number"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.csv", "space.yaml"]


def test_validate_reads_a_data_file_as_a_search_would(tmp_path):
    write_series(tmp_path / "series.csv")
    (tmp_path / "space.yaml").write_text(
        "name: t\nmodel: esn\ndata: {name: series, path: series.csv, target: [a, b], "
        "time: time}\n" + OBJECTIVE)

    run = raysearch("validate", "space.yaml", cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert "series.csv: 241/79/79 train/val/test, 2 features, 2 targets" in run.stdout


@pytest.mark.parametrize("space, write, overrides", [
    ("sequences", lambda p: write_sequences(p / "sequences.npz"), []),
    ("series", lambda p: write_series(p / "series.csv"), ["data.target=[a, b]"]),
    ("mlp", lambda p: write_table(p / "table.csv"),
     ["data.target=kind", "data.categorical=[colour]"]),
])
def test_the_ready_spaces_for_your_own_data_read_a_file_where_they_say(space, write, overrides,
                                                                       tmp_path):
    (tmp_path / "data").mkdir()
    write(tmp_path / "data")
    run = raysearch("validate", space, *(f"--set={o}" for o in overrides), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "train/val/test" in run.stdout
