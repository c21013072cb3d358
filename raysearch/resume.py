"""What `raysearch tune --resume` needs beyond Ray Tune's own experiment state: the spec as it
was made (the file's text, the --set overrides and the flags) and the MLflow runs the search
reports to. It lives beside Tune's state, in <storage>/<search name>/."""

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raysearch.spec import SpecError

STATE_FILE = "raysearch.json"
SPACE_FILE = "space.yaml"


@dataclass
class Origin:
    """How the spec was made: load_spec(file with `text`, overrides, **flags) gives it again."""

    text: str
    overrides: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchState:
    overrides: list[str]
    flags: dict[str, Any]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    started: float = field(default_factory=time.time)


def default_storage() -> Path:
    return home() / "ray_results"


def home() -> Path:
    """Where run output goes by default: RAYSEARCH_HOME (a submitted job's working directory is
    temporary, so jobs set it), else the working directory."""
    return Path(os.environ.get("RAYSEARCH_HOME") or Path.cwd()).expanduser()


def save(folder: Path, origin: Origin, state: SearchState) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPACE_FILE).write_text(origin.text)
    (folder / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))


def load(folder: Path) -> SearchState:
    return SearchState(**json.loads((folder / STATE_FILE).read_text()))


def find(storage: Path, name: str | None) -> Path:
    """The folder of search `name` under `storage`, or of the one started last."""
    if name:
        folder = storage / name
        if not (folder / STATE_FILE).is_file():
            raise SpecError(f"--resume {name}: no raysearch search of that name in {storage}")
        return folder
    found = sorted(storage.glob(f"*/{STATE_FILE}"), key=lambda p: load(p.parent).started)
    if not found:
        raise SpecError(f"--resume: no raysearch search to resume in {storage}")
    return found[-1].parent
