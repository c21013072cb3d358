"""Which storage a cluster can use: decided from the cluster's machines and the file system under
a path (a /proc/mounts text, as Linux gives it); and buckets, on a real S3 endpoint (conftest)."""

import pytest

from raysearch import resume
from raysearch.spec import SpecError
from raysearch.storage import filesystem_type, problem, resolve

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


@pytest.fixture
def bucket(s3, monkeypatch):
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    return "s3://runs/storage-tests"


def test_a_bucket_is_shared_and_one_that_is_not_there_is_refused_before_anything_starts(
        bucket):
    assert problem(bucket, ["head", "gpu-1"]) is None
    assert problem("s3://nowhere/results", ["laptop"]) == (
        "--storage s3://nowhere/results: the bucket nowhere does not exist")
    assert "ftp:// is not a storage raysearch knows" in problem("ftp://host/results", ["laptop"])
    # raysearch joins folders onto the URI: a query would swallow them
    assert "options in the URI are not supported" in problem(f"{bucket}?region=x", ["laptop"])
    assert resolve(f"{bucket}/") == bucket


def test_a_search_in_a_bucket_is_found_again_for_a_resume(bucket):
    for name, started in (("older", 1.0), ("newer", 2.0)):
        resume.save(bucket, name, resume.Origin(f"name: {name}\n", ["search.trials=3"]),
                    resume.SearchState(["search.trials=3"], {}, "sqlite:///m.db", "1", "run",
                                       started))
    assert resume.find(bucket, None) == "newer"
    assert resume.load(bucket, "older").overrides == ["search.trials=3"]
    assert resume.space_file(bucket, "older").read_text() == "name: older\n"
    with pytest.raises(SpecError, match="no raysearch search of that name in s3://runs/storage-tests"):
        resume.find(bucket, "missing")
