"""Where a search keeps its results and checkpoints, and whether every node can reach it.

Ray Train writes each checkpoint from the node its rank 0 runs on. On a cluster of several
machines a plain local path would scatter checkpoints over their disks, and the best one, the
resumable state and the promoted model would be lost; so a local path is refused there unless
it is on a network file system (NFS, EFS, a FUSE-mounted bucket) mounted on every node.
"""

from pathlib import Path

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "glusterfs", "ceph",
                       "beegfs", "gpfs", "fuse.")


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


def problem(storage: str, hostnames: list[str], mounts: str | None = None) -> str | None:
    """Why `storage` will not do for a cluster whose alive nodes have these host names."""
    if "://" in storage:
        return (f"--storage {storage}: remote storage URIs are not supported yet; use a path "
                "on a file system every node mounts (NFS, EFS, a FUSE-mounted bucket)")
    if len(set(hostnames)) <= 1:  # one machine (a laptop, or Ray's fake multi-node cluster)
        return None
    kind = filesystem_type(Path(storage), mounts)
    if kind.startswith(NETWORK_FILESYSTEMS):
        return None
    return (f"--storage {storage}: a local path ({kind or 'unknown'} file system), but the "
            f"cluster has {len(set(hostnames))} machines: checkpoints written on the others "
            "would be lost. Give a path on a file system every node mounts (NFS, EFS, a "
            "FUSE-mounted bucket)")
