"""One real Ray cluster (2 CPUs) shared by the whole test session; a fresh SQLite MLflow store
per test; an S3 endpoint on 127.0.0.1 for the tests that need a bucket. Nothing here reaches the
network."""

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
from helpers import free_port, listening_addresses, stop_process_group

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    dashboard_port = free_port()
    # Ray Train's placement-group cleaner asks the state API; with another Ray instance on the
    # machine it must be told which one (FACTS.md).
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dashboard_port}"
    # A submitted job's entrypoint runs `python` from the cluster's PATH: this venv's, as on a
    # cluster started from the project's environment.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    context = ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                       dashboard_port=dashboard_port)
    yield context
    ray.shutdown()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def write_spec(tmp_path: Path):
    """Writes a spec file from YAML text and returns its path."""

    def write(text: str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session")
def s3():
    """The AWS_* variables of a real S3 endpoint on 127.0.0.1 (moto's server) holding one bucket,
    `runs`: what pyarrow and Ray read, as they would for S3 or MinIO."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    env = {"AWS_ACCESS_KEY_ID": "raysearch", "AWS_SECRET_ACCESS_KEY": "raysearch",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.time() + 60
        while True:
            try:
                requests.get(env["AWS_ENDPOINT_URL"], timeout=2)
                break
            except requests.RequestException:
                assert time.time() < deadline and server.poll() is None, "no S3 server"
                time.sleep(0.3)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="raysearch",
                     aws_secret_access_key="raysearch").create_bucket(Bucket="runs")
        yield env
    finally:
        stop_process_group(server)


@dataclass
class DefaultSearch:
    run: subprocess.CompletedProcess  # its output
    folder: Path  # the working directory it ran in
    storage: Path
    tracking_uri: str
    listening: dict[str, str]  # address -> process name: every socket it listened on


@pytest.fixture(scope="session")
def default_search(tmp_path_factory) -> DefaultSearch:
    """The default search as a user runs it on a laptop, outside a terminal: the ready ESN
    space with 6 trials, no cluster to join (raysearch starts its own Ray instance beside the
    session's), the embedded MLflow store in the working directory. The sockets its process tree
    listens on are recorded while it runs."""
    folder = tmp_path_factory.mktemp("default-search")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_AUTH_MODE")}
    # Ray Train's placement-group cleaner asks this instance's state API, not the session's
    env["RAY_API_SERVER_ADDRESS"] = "http://127.0.0.1:8265"
    driver = subprocess.Popen(
        [sys.executable, "-m", "raysearch", "tune", "--space", "esn", "--trials", "6",
         "--storage", str(folder / "results")], cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, str] = {}
    try:
        while driver.poll() is None:
            seen.update(listening_addresses(driver.pid))
            time.sleep(0.5)
        out, err = driver.communicate()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    run = subprocess.CompletedProcess(driver.args, driver.returncode, out, err)
    assert run.returncode == 0, out[-3000:] + err[-3000:]
    return DefaultSearch(run, folder, folder / "results", f"sqlite:///{folder / 'mlflow.db'}",
                         seen)
