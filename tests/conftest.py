"""One real Ray cluster (2 CPUs) shared by the whole test session; a fresh SQLite MLflow store
per test. Nothing here reaches the network."""

import os
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import free_port

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
