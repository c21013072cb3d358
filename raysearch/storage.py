"""Where a search keeps its results and checkpoints, and whether every node can reach it.

Ray Train writes each checkpoint from the node its rank 0 runs on. On a cluster of several
machines a plain local path would scatter checkpoints over their disks, and the best one, the
resumable state and the promoted model would be lost; so a local path is refused there unless
it is on a network file system (NFS, EFS, a FUSE-mounted bucket) mounted on every node. A
bucket (s3://, gs://) is reached through pyarrow's file systems, as Ray reaches it, with the
credentials and endpoint those read (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...).
"""

from pathlib import Path

import pyarrow.fs

BUCKETS = ("s3", "gs", "gcs")

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "glusterfs", "ceph",
                       "beegfs", "gpfs", "fuse.")


def first_line(error: BaseException) -> str:
    """An error's first line, for a one-line message (an empty message gives its type)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def filesystem_type(path: str | Path, mounts: str | None = None) -> str:
    """The type of the file system `path` lies on, from /proc/mounts ('' if unknown)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def resolve(storage: str | Path) -> str:
    """The storage as Ray and every later step take it: a bucket URI as given, a local path
    absolute."""
    storage = str(storage)
    return storage.rstrip("/") if "://" in storage else str(Path(storage).expanduser().resolve())


def filesystem(storage: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The pyarrow file system of a resolved storage, and the storage's path in it."""
    if "://" not in storage:
        return pyarrow.fs.LocalFileSystem(), storage
    return pyarrow.fs.FileSystem.from_uri(storage)


def shared(storage: str, mounts: str | None = None) -> bool:
    """Whether every machine of a cluster reaches `storage`: a bucket or a network file system."""
    return "://" in storage or filesystem_type(Path(storage), mounts).startswith(
        NETWORK_FILESYSTEMS)


def problem(storage: str, hostnames: list[str], mounts: str | None = None) -> str | None:
    """Why `storage` will not do for a cluster whose alive nodes have these host names."""
    if "://" in storage:
        return unreachable(storage)
    if len(set(hostnames)) <= 1 or shared(storage, mounts):  # one machine: a laptop, a fake
        return None                                              # multi-node cluster
    kind = filesystem_type(Path(storage), mounts)
    return (f"--storage {storage}: a local path ({kind or 'unknown'} file system), but the "
            f"cluster has {len(set(hostnames))} machines: checkpoints written on the others "
            "would be lost. Give a path on a file system every node mounts (NFS, EFS, a "
            "FUSE-mounted bucket) or a bucket (s3://, gs://)")


def unreachable(uri: str) -> str | None:
    """Why this driver cannot write under bucket URI `uri`, found before any trial starts."""
    scheme = uri.split("://", 1)[0]
    if "?" in uri:  # raysearch joins folders onto the URI, which a query would swallow
        return (f"--storage {uri}: options in the URI are not supported; set them in the "
                "environment (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, ...)")
    if scheme not in BUCKETS:
        return (f"--storage {uri}: {scheme}:// is not a storage raysearch knows; give a path, "
                "an s3:// or a gs:// URI")
    try:
        fs, path = filesystem(uri)
        bucket = path.split("/", 1)[0]
        if fs.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound:
            return f"--storage {uri}: the bucket {bucket} does not exist"
        fs.create_dir(path)
    except Exception as e:  # noqa: BLE001  credentials, network and permission errors alike
        return f"--storage {uri}: cannot write there: {first_line(e)}"
    return None
