"""What the end-to-end tests share: the command line, a search's child runs, the leak check."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import requests
from mlflow import MlflowClient
from ray.util.state import list_actors

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


def cli_here(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`raysearch ARGS` in this process (typer's runner), for commands whose subject is what
    they do, not the process they run in: a second or more less than `cli` per call, the
    imports already done. An exception the command does not turn into an exit code is
    raised."""
    from typer.testing import CliRunner

    from raysearch.cli import app

    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(["raysearch", *args], result.exit_code, result.stdout,
                                       result.stderr)


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


TRAIN_ACTORS = ("TrainController", "RayTrainWorker", "Dispatcher")


def assert_nothing_left_running(within_s: float = 30.0) -> None:
    """No pool outlives the search: no placement group, no Train controller or worker, no
    dispatcher. A pool's group is removed as its Train run ends: give it a bounded time."""
    deadline = time.time() + within_s
    while True:
        groups = [g for g in ray.util.placement_group_table().values()
                  if g["state"] != "REMOVED"]
        actors = [a.class_name for a in list_actors(filters=[("state", "=", "ALIVE")])
                  if a.class_name in TRAIN_ACTORS]
        if not groups and not actors or time.time() > deadline:
            break
        time.sleep(0.5)
    assert groups == [] and actors == []


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


def train_runs_started() -> int:
    """Ray Train runs started on the cluster so far, ended ones too: one per pool start."""
    return len(list_actors(filters=[("class_name", "=", "TrainController")], limit=10_000))


def listening_addresses(root: int) -> dict[str, str]:
    """The addresses (ip:port) on which process `root` and every process below it listen for
    TCP connections, each with the name of its process (Ray's: 'ray::RayTrainWorker', ...)."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:  # the fields after the name, which may hold spaces: state, ppid, ...
            parents[int(pid)] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
                                    .split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree}
        grew, tree = bool(below - tree), tree | below
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                sockets[f"socket:[{fields[9]}]"] = _address(fields[1])
    found = {}
    for pid in tree:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_text().split("\0")[0].split()[0]
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except (OSError, IndexError):
            continue
        found.update({sockets[link]: name for link in links if link in sockets})
    return found


def _address(hex_address: str) -> str:
    """'0100007F:1F90' -> '127.0.0.1:8080'; IPv6 as its 16 bytes, ::ffff:a.b.c.d as a.b.c.d."""
    ip, port = hex_address.split(":")
    raw = b"".join(bytes.fromhex(ip[i:i + 8])[::-1] for i in range(0, len(ip), 8))
    if len(raw) == 16 and raw[:12] == bytes(10) + b"\xff\xff":
        raw = raw[12:]
    host = ".".join(map(str, raw)) if len(raw) == 4 else socket.inet_ntop(socket.AF_INET6, raw)
    return f"{host}:{int(port, 16)}"


@contextlib.contextmanager
def mlflow_models_serve(model_uri: str, tracking_uri: str) -> Iterator[str]:
    """`mlflow models serve -m MODEL_URI --env-manager local` on 127.0.0.1, as the README
    gives it (the venv's bin on PATH: MLflow starts `uvicorn` by name); its base URL once it
    answers /ping. Stopped, with every process it started, at the end."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(server, f"http://127.0.0.1:{port}/ping", 120, "no model server")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(server)


@contextlib.contextmanager
def optuna_dashboard(storage_url: str) -> Iterator[str]:
    """The `optuna-dashboard STORAGE_URL` a search prints, on 127.0.0.1; its base URL once its
    API answers. Stopped at the end."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), storage_url, "--host",
         "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(server, f"http://127.0.0.1:{port}/api/meta", 60, "no optuna-dashboard")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(server)


def wait_for(server: subprocess.Popen, url: str, timeout_s: float, what: str) -> None:
    """Until `url` answers (a server `server` started), failing with `what` if it exits or
    the time is up."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        assert server.poll() is None and time.time() < deadline, what
        time.sleep(0.3)


def diagnostics(tracking_uri: str, run_id: str) -> dict[str, bytes]:
    """The files in a run's `diagnostics/` artifacts, by name; PNGs checked to decode."""
    import io

    import mlflow
    from PIL import Image

    folder = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="diagnostics", tracking_uri=tracking_uri))
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    for name, data in files.items():
        if name.endswith(".png"):
            image = Image.open(io.BytesIO(data))
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100, name
    return files


@dataclass
class Rendered:
    dom: str  # the page's DOM after its scripts ran
    console: list[str]  # what its scripts logged, uncaught exceptions included
    screenshot: Path


def render_in_chromium(page: Path, screenshot: Path) -> Rendered:
    """`page` as headless Chromium renders it with every host name unresolvable (a page that
    needs the network shows it as errors), after 10 s of virtual time for its scripts."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: .ci/run installs Debian's package"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000",
             "--window-size=1300,5000"]
    with tempfile.TemporaryDirectory() as profile:
        flags.append(f"--user-data-dir={profile}")
        shot = subprocess.run([chromium, *flags, "--enable-logging=stderr", "--v=0",
                               f"--screenshot={screenshot}", page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=120)
        dom = subprocess.run([chromium, *flags, "--dump-dom", page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and dom.returncode == 0, shot.stderr[-2000:] + dom.stderr[-2000:]
    # Chromium logs what a page's scripts print to the console (errors, uncaught exceptions)
    # as CONSOLE lines, whatever their level
    return Rendered(dom.stdout, [line for line in shot.stderr.splitlines() if ":CONSOLE" in line],
                    screenshot)


def write_series(path: Path, steps: int = 400) -> Path:
    """A measured two-channel series with a time column: a sine and a slower cosine ten times
    larger, sampled every minute."""
    t = np.arange(steps)
    with path.open("w") as f:
        f.write("time,a,b,noise\n")
        for i in t:
            f.write(f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00,{np.sin(i / 5):.6f},"
                    f"{10 * np.cos(i / 11):.6f},{(i * 7919) % 13 / 13:.6f}\n")
    return path


def write_sequences(path: Path, count: int = 150, test: bool = False) -> Path:
    """A variable-length set of 3-feature sequences in 3 classes told apart by their frequency,
    each 6 to 24 steps long and padded after its steps with large junk (which a model must not
    read); with `test`, a held-out test part too."""
    rng = np.random.default_rng(0)

    def part(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        lengths = rng.integers(6, 25, n)
        x = rng.normal(1e3, 1e3, (n, 24, 3)).astype(np.float32)  # the junk
        for i in range(n):
            t = np.arange(lengths[i])[:, None] + rng.uniform(0, 6)
            x[i, :lengths[i]] = (np.sin(t * (0.4 + 0.5 * y[i]) + np.arange(3))
                                 + rng.normal(0, 0.1, (lengths[i], 3)))
        return x, y, lengths

    x, y, lengths = part(count)
    extra = (dict(zip(("x_test", "y_test", "lengths_test"), part(count // 3), strict=True))
             if test else {})
    np.savez(path, x=x, y=y, lengths=lengths, **extra)
    return path


def write_table(path: Path, rows: int = 300) -> Path:
    """A table with a header row: two numeric features far from unit scale, a categorical
    `colour` (text), a class `kind` (text) that the features and the colour decide, and a
    numeric `price` that they decide too (a regression target)."""
    rng = np.random.default_rng(0)
    size = rng.uniform(0, 100, rows)
    weight = rng.normal(5e3, 1e3, rows)
    colours = np.array(["red", "green", "blue"])[rng.integers(0, 3, rows)]
    kind = np.where(size + (colours == "red") * 40 > 60, "large", "small")
    price = 3 * size + weight / 100 + (colours == "blue") * 50 + rng.normal(0, 5, rows)
    lines = ["size,weight,colour,kind,price"]
    lines += [f"{s:.3f},{w:.1f},{c},{k},{p:.2f}"
              for s, w, c, k, p in zip(size, weight, colours, kind, price, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path
