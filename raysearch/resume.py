"""What `raysearch tune --resume` needs beyond Ray Tune's own experiment state: the spec as it
was made (the file's text, the --set overrides and the flags) and the MLflow runs the search
reports to. It lives beside Tune's state, in <storage>/<search name>/, a folder or a bucket."""

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs

from raysearch.spec import SpecError
from raysearch.storage import filesystem, first_line

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


def default_storage() -> str:
    """RAYSEARCH_STORAGE (a cluster's bucket, set by cluster.yaml), else <home>/ray_results."""
    return os.environ.get("RAYSEARCH_STORAGE") or str(home() / "ray_results")


def home() -> Path:
    """Where run output goes by default: RAYSEARCH_HOME (a submitted job's working directory is
    temporary, so jobs set it), else the working directory."""
    return Path(os.environ.get("RAYSEARCH_HOME") or Path.cwd()).expanduser()


def save(storage: str, name: str, origin: Origin, state: SearchState) -> None:
    fs, root = filesystem(storage)
    fs.create_dir(f"{root}/{name}")
    files = {SPACE_FILE: origin.text, STATE_FILE: json.dumps(asdict(state), indent=1)}
    for file, text in files.items():
        with fs.open_output_stream(f"{root}/{name}/{file}") as out:
            out.write(text.encode())


def read(storage: str, name: str, file: str) -> str:
    try:
        fs, root = filesystem(storage)
        with fs.open_input_stream(f"{root}/{name}/{file}") as stream:
            return stream.read().decode()
    except (OSError, ValueError) as e:  # pyarrow: not there, not ours to read, a bad URI
        raise SpecError(f"--resume: cannot read {storage}/{name}/{file}: {first_line(e)}"
                        ) from None


def load(storage: str, name: str) -> SearchState:
    return SearchState(**json.loads(read(storage, name, STATE_FILE)))


def space_file(storage: str, name: str) -> Path:
    """The spec file search `name` was started from, as a local file (fetched from a bucket)."""
    if "://" not in storage:
        return Path(storage) / name / SPACE_FILE
    copy = Path(tempfile.mkdtemp(prefix="raysearch-")) / SPACE_FILE
    copy.write_text(read(storage, name, SPACE_FILE))
    return copy


def find(storage: str, name: str | None) -> str:
    """The name of search `name` if it is in `storage`, else of the one started there last."""
    try:
        fs, root = filesystem(storage)

        def is_search(folder: str) -> bool:
            info = fs.get_file_info(f"{root}/{folder}/{STATE_FILE}")
            return info.type == pyarrow.fs.FileType.File

        if name:
            if not is_search(name):
                raise SpecError(f"--resume {name}: no raysearch search of that name in {storage}")
            return name
        folders = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        found = [f.base_name for f in folders
                 if f.type == pyarrow.fs.FileType.Directory and is_search(f.base_name)]
        if not found:
            raise SpecError(f"--resume: no raysearch search to resume in {storage}")
        return max(found, key=lambda folder: load(storage, folder).started)
    except (OSError, ValueError) as e:  # pyarrow: not there, not ours to read, a bad URI
        raise SpecError(f"--resume: cannot read {storage}: {first_line(e)}") from None
