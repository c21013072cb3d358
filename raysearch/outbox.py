"""The driver's MLflow writes, sent in order, surviving a tracking server that goes away.

A write the store cannot take now (the server is down, restarting, unreachable) waits here with
every write after it, and they are tried again at the next write: trials never wait for MLflow,
nothing is lost or reordered, and the user is warned once per outage. A write the store refuses
for another reason (a bad value) is skipped with a warning rather than blocking the rest.
"""

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import requests
from mlflow.exceptions import MlflowException

from raysearch.storage import first_line

# What MLflow says when the store did not answer: a connection refused or timed out, or a
# server error (502/503 from a proxy in front of a restarting server).
TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def fail_fast() -> None:
    """One try per request, not MLflow's 7 with backoff (minutes against a dead server, with
    Tune's driver loop blocked): the outbox does the retrying."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def unreachable(error: BaseException) -> bool:
    if isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError,
                          TimeoutError)):
        return True
    if isinstance(error, requests.HTTPError):
        return error.response is not None and error.response.status_code >= 500
    return isinstance(error, MlflowException) and error.error_code in TRANSIENT_CODES


class Outbox:
    def __init__(self, uri: str, say: Callable[[str], Any] = lambda s: print(s, file=sys.stderr)):
        self.uri, self.say = uri, say
        self.pending: deque[Callable[[], Any]] = deque()
        self.down_since: float | None = None

    def send(self, write: Callable[[], Any]) -> None:
        self.pending.append(write)
        self.flush()

    def flush(self) -> bool:
        """Send what waits, in order; False if the store is still unreachable."""
        while self.pending:
            try:
                self.pending[0]()
            except Exception as e:  # noqa: BLE001  sorted below: retried, or skipped and said
                if unreachable(e):
                    if self.down_since is None:
                        self.down_since = time.time()
                        self.say(f"warning: MLflow at {self.uri} is unreachable "
                                 f"({first_line(e)}); trials go on, and what they report is "
                                 "kept and logged when it is back")
                    return False
                self.say(f"warning: MLflow refused a write, skipped: {first_line(e)}")
            self.pending.popleft()
        if self.down_since is not None:
            self.say(f"MLflow at {self.uri} is back after {time.time() - self.down_since:.0f} s; "
                     "everything kept meanwhile is logged")
            self.down_since = None
        return True

    def drain(self, timeout_s: float, why: str) -> bool:
        """Wait (at most `timeout_s`) until every write is sent; says so if it has to wait."""
        deadline = time.time() + timeout_s
        if not self.flush():
            self.say(f"waiting up to {timeout_s:.0f} s for MLflow at {self.uri} {why}")
        while self.pending:
            if time.time() > deadline:
                return False
            time.sleep(1)
            self.flush()
        return True

    def call(self, write: Callable[[], Any], timeout_s: float, why: str) -> Any:
        """`write`'s result once the store has taken it and everything before it; raises
        TrackingDown after `timeout_s` of waiting, and what `write` raised otherwise."""
        box: dict[str, Any] = {}

        def attempt() -> None:
            try:
                box["value"] = write()
            except Exception as e:
                if unreachable(e):
                    raise
                box["error"] = e

        self.send(attempt)
        if not self.drain(timeout_s, why):
            raise TrackingDown(self.uri, timeout_s)
        if "error" in box:
            raise box["error"]
        return box["value"]


class TrackingDown(Exception):
    def __init__(self, uri: str, waited_s: float) -> None:
        super().__init__(f"MLflow at {uri} was still unreachable after {waited_s:.0f} s")
