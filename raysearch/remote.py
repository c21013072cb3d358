"""A search on a running cluster, through the Ray Jobs API: submit, watch, list, stop.

The job runs `raysearch tune` on the cluster with the spec file carried in the job's
runtime_env working_dir; the tracking URI is the cluster's (MLFLOW_TRACKING_URI on its nodes)
unless one is given. A job is found again by its submission id, the search name plus the time
it was submitted, and by the metadata raysearch puts on it.
"""

import asyncio
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.job_submission import JobStatus, JobSubmissionClient

from raysearch import _ray, progress

OVERRIDES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TAG = "raysearch"  # metadata key marking raysearch's jobs
ENDED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
GET_TOKEN = "`ray get-auth-token` on the head prints it"


class ClusterError(Exception):
    """The cluster could not be reached, or refused the request; the message says why."""


def token_source() -> str | None:
    """Where Ray would read this client's token from, in Ray's order; None if nowhere."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH ({path})" if Path(path).expanduser().is_file() else None
    home = Path.home() / ".ray" / "auth_token"
    return str(home) if home.is_file() else None


def connect(address: str) -> JobSubmissionClient:
    """A Jobs client for the dashboard at `address`, sending this client's token (see
    token_source) when it has one."""
    source = token_source()
    # Ray's client sends its token only in token mode; a user who has a token means it to be
    # sent, and a cluster without token authentication ignores it.
    if source and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        _ray.reload_auth_config()
    # Ray lets RAY_API_SERVER_ADDRESS and RAY_ADDRESS override the address it is given; the
    # address the user typed is the one meant.
    saved = {k: os.environ.pop(k) for k in OVERRIDES if k in os.environ}
    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001  connection, HTTP and authentication errors alike
        text = str(e).strip()
        if "Invalid authentication token" in text:
            where = source or "Ray's token sources"
            raise ClusterError(f"the Ray cluster at {address} refused the token from {where}: "
                               f"it is not this cluster's ({GET_TOKEN})") from None
        if "Missing authentication token" in text or "find an authentication token" in text:
            raise ClusterError(f"the Ray cluster at {address} wants a token and none was found "
                               "in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token "
                               f"({GET_TOKEN})") from None
        first = text.splitlines()[0] if text else type(e).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {first}") from None
    finally:
        os.environ.update(saved)


def submit(client: JobSubmissionClient, spec_file: Path, name: str, args: list[str]) -> str:
    """Submit `raysearch tune` for the spec; `args` are the flags after --space."""
    submission_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with tempfile.TemporaryDirectory() as folder:
        # the spec alone travels: the cluster has raysearch installed
        shutil.copy(spec_file, Path(folder) / spec_file.name)
        entrypoint = shlex.join(["python", "-m", "raysearch", "tune", "--space", spec_file.name,
                                 *args])
        try:
            return client.submit_job(
                entrypoint=entrypoint, submission_id=submission_id,
                runtime_env={"working_dir": folder, "env_vars": {
                    # the working directory is temporary: results and a default store go home
                    "RAYSEARCH_HOME": "~/raysearch",
                    # `raysearch stop` is a Ctrl-C: Tune saves the search, its runs are marked
                    # interrupted and its pools stopped (their resource requests withdrawn, so
                    # the autoscaler can remove their nodes), instead of a SIGTERM that kills
                    # the driver outright 3 s before a SIGKILL
                    "RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}},
                metadata={TAG: "1", "name": name, "space": spec_file.name})
        except Exception as e:  # noqa: BLE001  the Jobs API raises RuntimeError with the body
            raise ClusterError(f"the cluster refused the job: {str(e).splitlines()[0]}") from None


def follow(client: JobSubmissionClient, job_id: str, write: Callable[[str], Any]) -> str:
    """Write the job's logs as they come until it ends; its final status."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            write(lines)

    asyncio.run(tail())
    return wait(client, job_id)


def wait(client: JobSubmissionClient, job_id: str, timeout_s: float = 30) -> str:
    """The job's status once it has ended (the log stream closes a moment before)."""
    deadline = time.time() + timeout_s
    status = client.get_job_status(job_id)
    while status not in ENDED and time.time() < deadline:
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    return str(status.value if hasattr(status, "value") else status)


def best_so_far(logs: str) -> str:
    """'<metric>=<value> (trial <id>)' from the job's latest line of a trial's end, or ''."""
    found = progress.BEST.findall(logs)
    if not found:
        return ""
    metric, value, trial = found[-1]
    return f"{metric}={value} (trial {trial})"


def jobs(client: JobSubmissionClient) -> list[dict[str, str]]:
    """raysearch's jobs on the cluster, newest first: id, status, name, best so far."""
    rows = []
    for job in client.list_jobs():
        if not (job.metadata or {}).get(TAG) or not job.submission_id:
            continue
        rows.append({"id": job.submission_id, "status": str(job.status.value),
                     "name": job.metadata.get("name", ""),
                     "best": best_so_far(client.get_job_logs(job.submission_id)),
                     "start": job.start_time or 0})
    return sorted(rows, key=lambda r: r["start"], reverse=True)
