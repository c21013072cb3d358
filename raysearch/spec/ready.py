"""The search spaces that come with raysearch (`raysearch tune --space esn`)."""

from pathlib import Path

from raysearch.spec.errors import SpecError, listed

SPACES_DIR = Path(__file__).parent.parent / "search_spaces"


def ready_spaces() -> list[Path]:
    return sorted(SPACES_DIR.glob("*.yaml"))


def resolve_space(arg: str) -> Path:
    """A file path, or the name of a ready space (`esn`, `esn.yaml`, `search_spaces/esn.yaml`)."""
    if Path(arg).is_file():
        return Path(arg)
    name = Path(arg).name
    ready = SPACES_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if ready.is_file():
        return ready
    names = listed([p.stem for p in ready_spaces()]) or "none"
    raise SpecError(f"{arg}: no such file, nor a ready search space (ready: {names})")

