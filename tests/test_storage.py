"""Which storage paths a cluster can use: decided from the cluster's machines and the file
system under the path (a /proc/mounts text, as Linux gives it)."""

from raysearch.storage import filesystem_type, problem

MOUNTS = """\
/dev/nvme0n1p1 / ext4 rw,relatime 0 0
fs-12345.efs.us-west-2.amazonaws.com:/ /mnt/shared nfs4 rw,relatime 0 0
bucket /mnt/bucket fuse.gcsfuse rw,nosuid 0 0
"""


def test_the_file_system_under_a_path_is_its_deepest_mount():
    assert filesystem_type("/mnt/shared/runs", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/sharedx", MOUNTS) == "ext4"
    assert filesystem_type("/home/me/ray_results", MOUNTS) == "ext4"


def test_a_local_path_is_fine_on_one_machine_and_refused_on_several():
    assert problem("/home/me/ray_results", ["laptop"], MOUNTS) is None
    assert problem("/home/me/ray_results", ["head", "head", "head"], MOUNTS) is None
    message = problem("/home/me/ray_results", ["head", "gpu-1"], MOUNTS)
    assert "local path (ext4 file system)" in message and "2 machines" in message


def test_network_file_systems_are_shared():
    assert problem("/mnt/shared/runs", ["head", "gpu-1"], MOUNTS) is None
    assert problem("/mnt/bucket/runs", ["head", "gpu-1"], MOUNTS) is None


def test_remote_uris_are_refused_until_supported():
    assert "not supported yet" in problem("s3://bucket/runs", ["laptop"], MOUNTS)
