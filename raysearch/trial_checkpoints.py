"""A trial's checkpoints in the search's storage, written by its rank 0 after every epoch.

<storage>/<name>/train/<name>-<trial id>/checkpoint_<epoch>/ holds the model (config.json,
model.pt: what is promoted) and what going on needs (train_state.pt: the optimizer state or an
ESN's ridge sums, and the metrics of every epoch so far, which a resumed trial reports again
where the driver lost them). A checkpoint counts once its marker is written, after its files;
the trial's best (on the objective) and latest are kept.
"""

import tempfile
from contextlib import AbstractContextManager

import pyarrow.fs
import ray.train

from raysearch import checkpoint
from raysearch.storage import filesystem

PREFIX = "checkpoint_"
MARKER = ".complete"
STOPPED = "stopped_early"  # written when the scheduler stopped the trial before its last epoch


class TrialCheckpoints:
    def __init__(self, folder: str, metric: str, mode: str) -> None:
        """`folder`: the trial's folder, a local path or a bucket URI."""
        self.fs, self.root = filesystem(folder)
        self.metric, self.mode = metric, mode

    def path(self, epoch: int) -> str:
        """Where epoch `epoch`'s checkpoint goes, as Tune's results and the registry name it
        (a path in the storage's file system)."""
        return f"{self.root}/{PREFIX}{epoch:06d}"

    def epochs(self) -> tuple[list[int], list[int]]:
        """The epochs with a checkpoint, complete and incomplete, in order."""
        found = self.fs.get_file_info(pyarrow.fs.FileSelector(self.root, allow_not_found=True,
                                                              recursive=True))
        epochs, complete = set(), set()
        for info in found:  # <root>/checkpoint_N/<file>: a bucket may list no folder entries
            parts = info.path.removeprefix(self.root).strip("/").split("/")
            if parts[0].startswith(PREFIX) and parts[0].removeprefix(PREFIX).isdigit():
                epoch = int(parts[0].removeprefix(PREFIX))
                epochs.add(epoch)
                if parts[1:] == [MARKER]:
                    complete.add(epoch)
        return sorted(complete), sorted(epochs - complete)

    def latest(self) -> str | None:
        complete, _ = self.epochs()
        return self.path(complete[-1]) if complete else None

    def history(self) -> tuple[list[dict], bool]:
        """The metrics of every epoch up to the latest checkpoint, as they were reported, and
        whether the scheduler stopped the trial early."""
        marker = self.fs.get_file_info(f"{self.root}/{STOPPED}")
        stopped = marker.type != pyarrow.fs.FileType.NotFound
        latest = self.latest()
        if latest is None:
            return [], stopped
        with self.local(latest) as folder:
            state = checkpoint.load_train_state(folder)
        return (state.get("history", []) if state else []), stopped

    def mark_stopped(self) -> None:
        with self.fs.open_output_stream(f"{self.root}/{STOPPED}"):
            pass

    def local(self, path: str) -> AbstractContextManager[str]:
        """A checkpoint as a local folder (fetched when the storage is a bucket)."""
        return ray.train.Checkpoint(path, filesystem=self.fs).as_directory()

    def save(self, epoch: int, write, history: list[dict]) -> None:
        """`write(folder)` fills a local folder; it goes to storage as epoch `epoch`'s
        checkpoint, then every checkpoint but the best (scored by `history`, the metrics of
        every epoch reported) and this latest one is deleted."""
        with tempfile.TemporaryDirectory() as folder:
            write(folder)
            self.fs.create_dir(self.path(epoch))
            pyarrow.fs.copy_files(folder, self.path(epoch), destination_filesystem=self.fs)
        with self.fs.open_output_stream(f"{self.path(epoch)}/{MARKER}"):
            pass
        scores = {entry["epoch"]: entry[self.metric] for entry in history}
        complete, incomplete = self.epochs()
        scored = [e for e in complete if e in scores]
        pick = min if self.mode == "min" else max
        best = pick(scored, key=scores.get) if scored else epoch
        for e in [*incomplete, *complete]:
            if e not in (epoch, best):
                self.fs.delete_dir(self.path(e))
