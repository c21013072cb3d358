"""A search submitted to a running cluster through the Ray Jobs API: the session's Ray cluster,
reached through its dashboard like a remote head, and a real SQLite MLflow store."""

import re
import signal
import subprocess
import sys
import time

from helpers import assert_nothing_left_running, cli, free_port
from mlflow import MlflowClient
from ray.job_submission import JobSubmissionClient

SPACE = """\
    name: remote
    model: cnn
    data: {{name: digits}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: {trials}, sampler: random, seed: 0}}
    scheduler: {{type: none, max_t: 1}}
    resources: {{workers: 2, cpus_per_worker: 1}}
    params:
      lr: {{type: float, low: 0.005, high: 0.02, log: true}}
    fixed: {{channels: 8, optimizer: adam}}
"""


def test_a_submitted_search_runs_on_after_the_client_detaches(ray_cluster, tmp_path,
                                                              tracking_uri, write_spec):
    address = f"http://{ray_cluster.dashboard_url}"
    client = subprocess.Popen(
        [sys.executable, "-m", "raysearch", "tune", "--space",
         str(write_spec(SPACE.format(trials=1))), "--address", address, "--tracking-uri",
         tracking_uri, "--storage", str(tmp_path / "results")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    submitted = client.stdout.readline()
    job = re.match(r"job (\S+) submitted", submitted).group(1)
    assert job.startswith("remote-")
    # the job's own output streams back; Ctrl-C once it has started a trial detaches
    deadline = time.time() + 300
    for line in client.stdout:
        if "started with configuration" in line or time.time() > deadline:
            break
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, out + err
    assert f"detached; job {job} runs on" in err and "Traceback" not in err

    follow = cli("logs", job, "--follow", "--address", address)
    assert follow.returncode == 0, follow.stderr
    assert "trials: 1 completed" in follow.stdout
    listed = cli("jobs", "--address", address)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if job in line)
    assert "SUCCEEDED" in row and "val_accuracy=" in row
    experiment = MlflowClient(tracking_uri).get_experiment_by_name("remote")
    runs = MlflowClient(tracking_uri).search_runs([experiment.experiment_id],
                                                  "tags.`raysearch.state` = 'completed'")
    assert len(runs) == 1


def test_a_job_stops_on_request(ray_cluster, tmp_path, tracking_uri, write_spec):
    address = f"http://{ray_cluster.dashboard_url}"
    jobs = JobSubmissionClient(address)
    client = subprocess.Popen(
        [sys.executable, "-m", "raysearch", "tune", "--space",
         str(write_spec(SPACE.format(trials=20))), "--address", address, "--tracking-uri",
         tracking_uri, "--storage", str(tmp_path / "results")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = re.match(r"job (\S+) submitted", client.stdout.readline()).group(1)
    client.send_signal(signal.SIGINT)
    client.communicate(timeout=60)
    deadline = time.time() + 120
    while str(jobs.get_job_status(job).value) != "RUNNING" and time.time() < deadline:
        time.sleep(0.5)

    stopped = cli("stop", job, "--address", address)
    assert stopped.returncode == 0, stopped.stderr
    assert f"job {job}: STOPPED" in stopped.stdout
    assert_nothing_left_running(within_s=60)


def test_an_unreachable_cluster_is_one_line():
    address = f"http://127.0.0.1:{free_port()}"
    run = cli("jobs", "--address", address)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    line, = run.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach the Ray cluster at {address}")
