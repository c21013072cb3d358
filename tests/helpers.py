"""What the end-to-end tests share: the command line, a search's child runs, the leak check."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray
import requests
from mlflow import MlflowClient

from raysearch import search, tracking


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, env: dict | None = None, only_env: dict | None = None
        ) -> subprocess.CompletedProcess:
    """`raysearch ARGS` in a subprocess: this environment plus `env`, or `only_env` alone."""
    environment = only_env if only_env is not None else {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "raysearch", *args], capture_output=True,
                          text=True, env=environment, timeout=600)


# what Ray puts before each line a worker process printed: "(run_trial pid=123)"
RAY_WORKER_LINE = re.compile(r"\(\w+ pid=\d+(, ip=[\d.]+)?\)")


def own_tracebacks(stderr: str) -> list[str]:
    """The traceback lines of the command's own process. Ray forwards what its worker processes
    print, and a trial actor that Ray terminates at the end of a search can print one of its own
    (its SIGTERM handler raises SystemExit inside whatever runs, seen in a weakref callback);
    that one is Ray's and harmless, and the trials' states are checked on their own."""
    return [line for line in stderr.splitlines()
            if "Traceback" in line and not RAY_WORKER_LINE.search(line)]


def trial_runs(client: MlflowClient, name: str) -> list:
    """The trial runs of search `name` in the store; none while its experiment does not exist."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.`{tracking.TRIAL_TAG}` != ''")


def child_runs(client: MlflowClient, outcome: search.Outcome):
    experiment = client.get_experiment_by_name(outcome.name)
    return client.search_runs([experiment.experiment_id],
                              f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")


def assert_nothing_left_running(within_s: float = 30.0) -> None:
    """No Ray Train worker group's placement group outlives the search. A stopped trial's group
    is removed by Ray Train's cleaner actor, which polls: give it a bounded time."""
    deadline = time.time() + within_s
    while True:
        live = [g for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]
        if not live or time.time() > deadline:
            break
        time.sleep(0.5)
    assert live == []


def start_mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1 (SQLite, artifacts served), in its own session."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return server
        except requests.RequestException:
            assert server.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    stop_process_group(server)
    raise AssertionError("mlflow server did not start")


def stop_process_group(server: subprocess.Popen) -> None:
    """A server started in its own session, and every process it started, by its group (which
    outlives its leader)."""
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(timeout=30)
