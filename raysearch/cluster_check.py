"""Check a `ray up` cluster file as Ray does, and where Ray does not look.

Ray's own check (prepare_config, then validate_config) catches unknown keys at the top level
and in node types, wrong types and a bad head_node_type, but passes any key under `provider`
and `node_config` on to the cloud, where a typo silently does nothing (a `cache_stoped_nodes`
that keeps paying for stopped nodes) or fails minutes into `ray up`. So those keys are checked
here against the names the provider and the cloud API take.
"""

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

PROVIDER_KEYS = {
    "aws": {"type", "region", "availability_zone", "cache_stopped_nodes", "security_group",
            "use_internal_ips", "use_external_head_ip", "key_pair", "vpc_id",
            "cloudwatch", "disable_launch_config_check"},
    "gcp": {"type", "region", "availability_zone", "project_id", "cache_stopped_nodes",
            "use_internal_ips", "use_external_head_ip"},
    "fake_multinode": {"type", "use_node_id_as_ip", "disable_node_updaters",
                       "disable_launch_config_check", "gcs_address", "launch_multiple"},
}
# the top-level fields of EC2 RunInstances and of a Compute Engine instance
NODE_CONFIG_KEYS = {
    "aws": {"InstanceType", "ImageId", "BlockDeviceMappings", "InstanceMarketOptions",
            "IamInstanceProfile", "SubnetIds", "SubnetId", "SecurityGroupIds", "KeyName",
            "TagSpecifications", "Placement", "NetworkInterfaces", "UserData",
            "CapacityReservationSpecification", "MetadataOptions", "EbsOptimized",
            "Monitoring", "CpuOptions", "HibernationOptions", "LaunchTemplate",
            "PrivateIpAddress", "DisableApiTermination", "InstanceInitiatedShutdownBehavior",
            "CreditSpecification", "ElasticGpuSpecification", "LicenseSpecifications"},
    "gcp": {"machineType", "disks", "guestAccelerators", "scheduling", "networkInterfaces",
            "serviceAccounts", "metadata", "labels", "tags", "minCpuPlatform",
            "shieldedInstanceConfig", "confidentialInstanceConfig", "advancedMachineFeatures",
            "reservationAffinity", "resourcePolicies", "canIpForward", "deletionProtection",
            "hostname", "displayDevice", "networkPerformanceConfig", "description",
            "sourceMachineImage", "params"},
    "fake_multinode": set(),
}


def _unknown(keys: Any, known: set[str], path: str) -> list[str]:
    problems = []
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{path}.{key}: unknown key{hint}")
    return problems


def check(path: str | Path) -> list[str]:
    """What is wrong with the cluster file at `path`: Ray's verdict, then ours; [] if nothing."""
    from raysearch import _ray

    config = yaml.safe_load(Path(path).read_text())
    kind = config.get("provider", {}).get("type")
    try:
        # Ray's fake provider has no defaults file in the wheel: a complete file is checked as is
        _ray.validate_cluster_config(copy.deepcopy(config), fill_defaults=kind != "fake_multinode")
    except Exception as e:  # noqa: BLE001  Ray raises ValueError or jsonschema's errors
        return [f"{path}: {str(e).splitlines()[0]}"]
    if kind not in PROVIDER_KEYS:
        return [f"{path}: provider.type {kind!r} is not one raysearch knows "
                f"({', '.join(PROVIDER_KEYS)})"]
    problems = _unknown(config["provider"], PROVIDER_KEYS[kind], "provider")
    for name, node_type in config.get("available_node_types", {}).items():
        problems += _unknown(node_type.get("node_config", {}), NODE_CONFIG_KEYS[kind],
                             f"available_node_types.{name}.node_config")
    return [f"{path}: {p}" for p in problems]
