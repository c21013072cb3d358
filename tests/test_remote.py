"""A cluster as a team runs one, on 127.0.0.1: a Ray head started from cluster/local.yaml (Ray's
fake multi-node provider, fake GPU nodes added and removed by its autoscaler) with token
authentication, and a real `mlflow server`. Searches are submitted to it through the Jobs API,
or run by a driver on the head, as after `ray attach`."""

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pyarrow.fs
import pytest
import requests
import torch
import yaml
from helpers import cli, free_port, start_mlflow_server, stop_process_group, trial_runs
from mlflow import MlflowClient

import raysearch
from raysearch import checkpoint
from raysearch.data import DATASETS

ROOT = Path(__file__).parent.parent
SPACE = """\
    name: {name}
    model: cnn
    data: {{name: digits}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: {trials}, sampler: random, seed: 0, max_concurrent: 1}}
    scheduler: {{type: none, max_t: 1}}
    resources: {{workers: 2, cpus_per_worker: 1, gpus_per_worker: {gpus}}}
    params:
      lr: {{type: float, low: 0.005, high: 0.02, log: true}}
    fixed: {{channels: 8, optimizer: adam}}
"""
# Variables a client may have that would point it at another cluster or another token.
FOREIGN = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
           "RAY_AUTH_MODE", "MLFLOW_TRACKING_URI")


@dataclass
class Cluster:
    dashboard: str  # http://127.0.0.1:PORT, what --address takes
    gcs: str  # what a driver on the head connects to
    mlflow: str
    token: str

    def env(self, **extra: str) -> dict[str, str]:
        """A client's environment holding this cluster's token and nothing of other clusters."""
        base = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        return {**base, "RAY_AUTH_TOKEN": self.token, **extra}

    def nodes(self) -> list[dict]:
        """Every node the cluster has had, alive or dead, from the dashboard's state API."""
        reply = requests.get(f"{self.dashboard}/api/v0/nodes", params={"limit": 1000},
                             headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        return reply.json()["data"]["result"]["result"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    folder = tmp_path_factory.mktemp("cluster")
    gcs, dashboard = free_port(), free_port()
    config = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())
    # Fake nodes join the head at the GCS port given here (6379 otherwise); GPU nodes go
    # 15 s after their last trial instead of a minute, so the test sees them go.
    config["provider"]["gcs_address"] = f"127.0.0.1:{gcs}"
    config["idle_timeout_minutes"] = 0.25
    (folder / "local.yaml").write_text(yaml.safe_dump(config))
    token = secrets.token_hex(32)
    # Ray's socket paths must stay under 108 bytes: a pytest folder is too deep for them
    temp = tempfile.mkdtemp(prefix="rs-")
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(s3)  # every node reaches the bucket, as a cloud node does with its role
    env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=token, DASHBOARD_METRIC_PORT=str(free_port()),
               AUTOSCALER_METRIC_PORT=str(free_port()),
               RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{dashboard}",
               # the jobs' `python` is this venv's, as on a cluster set up by cluster.yaml
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={free_port()}",
         f"--ray-client-server-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--temp-dir={temp}", f"--autoscaling-config={folder / 'local.yaml'}"],
        env=env, stdout=(folder / "head.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    mlflow_port, server = free_port(), None
    try:
        server = start_mlflow_server(folder, mlflow_port)
        started = Cluster(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}",
                          f"http://127.0.0.1:{mlflow_port}", token)
        deadline = time.time() + 120
        while True:
            try:
                if started.nodes():
                    break
            except (requests.RequestException, KeyError, ValueError):
                pass
            assert time.time() < deadline and head.poll() is None, (
                "the Ray head did not start: " + (folder / "head.log").read_text()[-3000:])
            time.sleep(1)
        yield started
    finally:
        if server:
            stop_process_group(server)
        # The head, its fake nodes and their workers: all in the session `ray start` began.
        # Nothing of theirs outlives the test, so there is nothing to stop gracefully.
        stop_process_group(head)
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def submitting(cluster: Cluster, spec: Path, storage: Path):
    """`raysearch tune --address` running as a client process, killed if the test fails."""
    client = subprocess.Popen(
        [sys.executable, "-m", "raysearch", "tune", "--space", str(spec), "--address",
         cluster.dashboard, "--tracking-uri", cluster.mlflow, "--storage", str(storage)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env())
    try:
        yield client
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()


def test_a_cluster_refuses_a_client_without_its_token_in_one_line(cluster, tmp_path):
    nobody = {**cluster.env(), "HOME": str(tmp_path)}  # no ~/.ray/auth_token either
    del nobody["RAY_AUTH_TOKEN"]
    missing = cli("jobs", "--address", cluster.dashboard, only_env=nobody)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        f"error: the Ray cluster at {cluster.dashboard} wants a token and none was found in "
        "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` on the "
        "head prints it)"]

    (tmp_path / "token").write_text(secrets.token_hex(32))
    wrong = cli("jobs", "--address", cluster.dashboard,
                only_env={**nobody, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    line, = wrong.stderr.strip().splitlines()
    assert f"refused the token from RAY_AUTH_TOKEN_PATH ({tmp_path / 'token'})" in line



def test_a_submitted_search_reports_to_the_team_server_and_runs_on_after_a_detach(
        cluster, tmp_path):
    spec = tmp_path / "space.yaml"
    spec.write_text(textwrap.dedent(SPACE).format(name="remote", trials=2, gpus=0))
    with submitting(cluster, spec, tmp_path / "results") as client:
        job = re.match(r"job (\S+) submitted", client.stdout.readline()).group(1)
        assert job.startswith("remote-")
        # the job's own output streams back; Ctrl-C once it has started a trial detaches
        deadline = time.time() + 300
        for line in client.stdout:
            if re.match(r"trial \w+ started", line) or time.time() > deadline:
                break
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=60)
    assert client.returncode == 0, out + err
    assert f"detached; job {job} runs on" in err and "Traceback" not in err

    follow = cli("logs", job, "--follow", "--address", cluster.dashboard,
                 only_env=cluster.env())
    assert follow.returncode == 0, follow.stderr
    assert "trials: 2 completed" in follow.stdout
    listed = cli("jobs", "--address", cluster.dashboard, only_env=cluster.env())
    row = next(line for line in listed.stdout.splitlines() if job in line)
    assert "SUCCEEDED" in row and "val_accuracy=" in row

    # the trials are runs on the team's server, and its registry holds the champion
    server = MlflowClient(cluster.mlflow)
    assert len(trial_runs(server, "remote")) == 2
    champion = server.get_model_version_by_alias("remote", "champion")
    out = tmp_path / "pulled"
    pulled = cli("pull", "remote@champion", "--out", str(out), "--tracking-uri",
                 cluster.mlflow, only_env=cluster.env())
    assert pulled.returncode == 0, pulled.stderr
    model = raysearch.load(out)
    splits, _ = DATASETS["digits"].load(DATASETS["digits"].options())
    x_test, y_test = splits["test"]
    saved = mlflow.artifacts.download_artifacts(champion.source, tracking_uri=cluster.mlflow)
    assert torch.equal(model(x_test), checkpoint.load(saved)(x_test))
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy == pytest.approx(float(champion.tags["test_accuracy"]), abs=1e-6)


def test_a_job_stops_on_request(cluster, tmp_path):
    spec = tmp_path / "space.yaml"
    spec.write_text(textwrap.dedent(SPACE).format(name="stopped", trials=20, gpus=0))
    with submitting(cluster, spec, tmp_path / "results") as submitted:
        job = re.match(r"job (\S+) submitted", submitted.stdout.readline()).group(1)
        submitted.send_signal(signal.SIGINT)
        submitted.communicate(timeout=60)
    deadline, running = time.time() + 120, False
    while not running and time.time() < deadline:
        status = cli("jobs", "--address", cluster.dashboard, only_env=cluster.env())
        running = any(job in row and "RUNNING" in row for row in status.stdout.splitlines())
    assert running
    # Ray says RUNNING as it launches the command: stopped once its search has begun a trial
    server = MlflowClient(cluster.mlflow)
    while not trial_runs(server, "stopped"):
        assert time.time() < deadline + 120, "no trial began"
        time.sleep(0.5)

    stopped = cli("stop", job, "--address", cluster.dashboard, only_env=cluster.env())
    assert stopped.returncode == 0, stopped.stderr
    assert f"job {job}: STOPPED" in stopped.stdout
    # stopped as Ctrl-C stops a search, not killed: its run says so (a killed driver leaves it
    # RUNNING, and its pool's resource request would keep the autoscaler's nodes for minutes)
    experiment = server.get_experiment_by_name("stopped")
    (parent,) = server.search_runs([experiment.experiment_id], "tags.`raysearch.role` = 'search'")
    assert parent.info.status == "KILLED"


def test_gpu_trials_scale_fake_gpu_nodes_up_and_down_and_checkpoint_to_a_bucket(
        cluster, s3, tmp_path, monkeypatch):
    """The trial's 2 workers want a GPU each; only the autoscaler's fake GPU nodes have one,
    and those have no CUDA device, so the trial trains with gloo on the CPU. The nodes write
    their checkpoints to the cluster's bucket, from which the champion is registered."""
    spec = tmp_path / "space.yaml"
    spec.write_text(textwrap.dedent(SPACE).format(name="fakegpu", trials=1, gpus=1))
    # a driver on the head, as after `ray attach cluster.yaml`
    # the search's Optuna study in a database the team reaches (here, one every fake node
    # shares the disk of): a bucket holds no SQLite file
    run = cli("tune", "--space", str(spec), "--tracking-uri", cluster.mlflow,
              "--storage", "s3://runs/results",
              f"--set=search.storage=sqlite:///{tmp_path / 'optuna.db'}",
              only_env=cluster.env(RAY_ADDRESS=cluster.gcs, RAY_AUTH_MODE="token",
                                   RAY_API_SERVER_ADDRESS=cluster.dashboard, **s3))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "trials: 1 completed" in run.stdout
    assert "a trial needs 2 GPU (2 workers x 1) but the Ray cluster has 0 GPU now" in run.stderr

    def gpu_nodes(state: str) -> int:
        return sum(n["state"] == state and n["resources_total"].get("GPU", 0) > 0
                   for n in cluster.nodes())

    assert gpu_nodes("ALIVE") + gpu_nodes("DEAD") >= 2
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    fs, _ = pyarrow.fs.FileSystem.from_uri("s3://runs/results")
    files = [f.path for f in fs.get_file_info(pyarrow.fs.FileSelector(
        "runs/results/fakegpu", recursive=True))]
    assert "runs/results/fakegpu/raysearch.json" in files  # what --resume reads
    assert any("/experiment_state-" in p for p in files)  # Tune's own state
    assert any("/train/fakegpu-" in p and p.endswith("/model.pt") for p in files)
    champion = MlflowClient(cluster.mlflow).get_model_version_by_alias("fakegpu", "champion")
    assert float(champion.tags["test_accuracy"]) > 0

    deadline = time.time() + 120
    while gpu_nodes("ALIVE") and time.time() < deadline:
        time.sleep(2)
    assert gpu_nodes("ALIVE") == 0


def test_an_unreachable_cluster_is_one_line():
    address = f"http://127.0.0.1:{free_port()}"
    run = cli("jobs", "--address", address)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    line, = run.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach the Ray cluster at {address}")
