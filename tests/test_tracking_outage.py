"""A real `mlflow server` goes away mid-search and comes back: the trials run on, what they
reported meanwhile is logged when it is back, and the champion is registered. And one that is
down from the start stops the search before any trial, with one line."""

import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import (
    cli,
    free_port,
    own_tracebacks,
    start_mlflow_server,
    stop_process_group,
    trial_runs,
)
from mlflow import MlflowClient

from raysearch import tracking

SPACE = """\
    name: outage
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 2, sampler: random, seed: 0, max_concurrent: 1}
    scheduler: {type: none, max_t: 40}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr: {type: float, low: 1e-3, high: 1e-1, log: true}
    fixed: {channels: 4, optimizer: adam}
"""
EPOCHS = 40  # a trial of some seconds: the second still runs when the first has completed


def completed(client: MlflowClient) -> int:
    return sum(r.data.tags.get(tracking.STATE_TAG) == "completed"
               for r in trial_runs(client, "outage"))


def reports(storage: Path) -> int:
    """The results Tune has received for the search's trials (one line of result.json each)."""
    return sum(len(f.read_text().splitlines()) for f in storage.glob("outage/*/result.json"))


def test_a_server_that_goes_away_mid_search_loses_nothing(ray_cluster, tmp_path, write_spec):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)
    search = None
    try:
        search = subprocess.Popen(
            [sys.executable, "-m", "raysearch", "tune", "--space", str(write_spec(SPACE)),
             "--tracking-uri", uri, "--storage", str(tmp_path / "results")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RAY_ADDRESS": ray_cluster.address_info["address"]})
        client = MlflowClient(uri)
        deadline = time.time() + 300
        while completed(client) < 1:
            assert search.poll() is None and time.time() < deadline, search.communicate()
            time.sleep(1)

        stop_process_group(server)  # the server dies; the search must not notice beyond a warning
        down_ms = time.time() * 1000
        # down for 8 s at least, and until the running trial has reported again
        before = reports(tmp_path / "results")
        while time.time() * 1000 < down_ms + 8_000 or reports(tmp_path / "results") == before:
            assert search.poll() is None and time.time() < deadline + 300, search.communicate()
            time.sleep(1)
        up_ms = time.time() * 1000
        assert search.poll() is None
        server = start_mlflow_server(tmp_path, port)

        out, err = search.communicate(timeout=400)
        assert search.returncode == 0, out + err
        assert own_tracebacks(err) == []
        assert err.count("is unreachable") == 1 and "is back" in err
        assert "now champion" in out
    finally:
        if search is not None and search.poll() is None:
            search.kill()
        stop_process_group(server)

    # what the server stored, read from its database
    client = MlflowClient(f"sqlite:///{tmp_path / 'server.db'}")
    runs = trial_runs(client, "outage")
    assert len(runs) == 2
    stamps = []
    for run in runs:
        assert run.data.tags[tracking.STATE_TAG] == "completed"
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
        stamps += [m.timestamp for m in history]
    # some results were reported while the server was down, and logged after
    assert any(down_ms <= t <= up_ms for t in stamps)
    assert client.get_model_version_by_alias("outage", "champion")


def test_a_server_down_at_the_start_stops_the_search_before_any_trial(tmp_path, write_spec):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.time()
    run = cli("tune", "--space", str(write_spec(SPACE)), "--tracking-uri", uri,
              "--storage", str(tmp_path / "results"))
    assert run.returncode == 2
    line, = run.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach the MLflow tracking store {uri}")
    assert not (tmp_path / "results").exists()
    assert time.time() - started < 60  # one try, not MLflow's minutes of retries
