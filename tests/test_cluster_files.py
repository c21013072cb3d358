"""The cluster files `ray up` reads: valid by the installed Ray's own schema, free of typos
where that schema does not look, and secured the way the README says."""

from pathlib import Path

import pytest
import yaml

from raysearch.cluster_check import check

ROOT = Path(__file__).parent.parent
FILES = ["cluster.yaml", "cluster/gcp.yaml", "cluster/local.yaml"]
CLOUD = ["cluster.yaml", "cluster/gcp.yaml"]


@pytest.mark.parametrize("name", FILES)
def test_the_shipped_cluster_files_pass_rays_check_and_ours(name):
    assert check(ROOT / name) == []


@pytest.mark.parametrize("change, words", [
    (lambda c: c["provider"].update(cache_stoped_nodes=False),
     "provider.cache_stoped_nodes: unknown key; did you mean 'cache_stopped_nodes'?"),
    (lambda c: c["available_node_types"]["gpu1"]["node_config"].update(InstanceTyp="g5.xlarge"),
     "available_node_types.gpu1.node_config.InstanceTyp: unknown key; did you mean "
     "'InstanceType'?"),
    (lambda c: c.update(max_worker=3), "max_worker"),
    (lambda c: c.update(head_node_type="nobody"), "`head_node_type` must be one of"),
])
def test_a_typo_anywhere_is_named(change, words, tmp_path):
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    change(config)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    problems = check(path)
    assert len(problems) == 1 and words in problems[0], problems


@pytest.mark.parametrize("name", CLOUD)
def test_cloud_clusters_scale_gpus_from_zero_and_are_locked_down(name):
    config = yaml.safe_load((ROOT / name).read_text())
    workers = {k: v for k, v in config["available_node_types"].items()
               if k != config["head_node_type"]}
    assert sorted(w["resources"]["GPU"] for w in workers.values()) == [1, 4]
    assert all(w["min_workers"] == 0 for w in workers.values())
    # the token travels with the config, and every `ray start` demands it
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
              if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert all("MLFLOW_TRACKING_URI=http://" in c for c in starts)
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "mlflow server" in head
    # checkpoints go to a bucket every node reaches, not to the head's disk
    bucket = {"aws": "RAYSEARCH_STORAGE=s3://", "gcp": "RAYSEARCH_STORAGE=gs://"}
    assert bucket[config["provider"]["type"]] in head
    # and the searches' Optuna studies to a database on the head, where the searches run
    assert "RAYSEARCH_STUDY_STORAGE=sqlite:///$HOME/optuna/studies.db" in head
    # the Ray on the nodes is the one this project pins
    assert any("requirements-ci.txt" in c for c in config["setup_commands"])
    if config["provider"]["type"] == "aws":
        (rule,) = config["provider"]["security_group"]["IpPermissions"]
        assert (rule["FromPort"], rule["ToPort"]) == (22, 22)


def test_the_pinned_ray_is_the_installed_one():
    import ray

    pins = (ROOT / "requirements-ci.txt").read_text()
    assert f"ray[tune,train,default]=={ray.__version__}" in pins
