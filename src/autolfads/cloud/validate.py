"""Offline check of a cluster YAML (generated or edited by hand): Ray's own schema validator plus
our checks of what Ray leaves free-form (provider, node_config) and of the security settings.

Every problem is one UserInputError line naming the file and the YAML path, e.g.
`cluster.yaml: provider.availability_zone 'us-central1': not a GCP zone ...`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from autolfads.cloud import gcp, gcp_setup
from autolfads.cloud.cluster import MIN_DISK_GB, check_image
from autolfads.cloud.local import check_local_config
from autolfads.errors import UserInputError


@dataclass(frozen=True)
class Shape:
    """What a config costs and where its outputs go (read back for `cloud up/submit/download`)."""

    head_machine: str
    worker_machine: str
    gpu_type: str
    gpus_per_worker: int
    max_workers: int
    spot: bool
    disk_gb: int
    bucket: str | None
    zone: str = "us-central1-a"
    idle_timeout_minutes: float = 5.0  # Ray's default
    worker_external_ip: bool = False
    head_external_ip: bool = True
    wheel: bool = True  # nodes install the wheel (through the NAT) rather than pull an image

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    cur: Any = cfg
    for key in dotted.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _gpu_of(node: dict[str, Any], machine: str) -> tuple[str, int] | None:
    accels = node.get("guestAccelerators") or []
    if accels:
        a = accels[0]
        # Ray also accepts the full URL form projects/P/zones/Z/acceleratorTypes/NAME.
        return str(a.get("acceleratorType", "")).rsplit("/", 1)[-1], int(
            a.get("acceleratorCount", 1))
    return gcp.gpu_of_machine(machine)


def _scheduling(node: dict[str, Any]) -> list[dict[str, Any]]:
    sched = node.get("scheduling") or {}
    # Ray's own examples write scheduling as a list of one-key mappings; accept both forms.
    return [i for i in (sched if isinstance(sched, list) else [sched]) if isinstance(i, dict)]


def _is_spot(node: dict[str, Any]) -> bool:
    return any(i.get("provisioningModel") == "SPOT" or i.get("preemptible") is True
               for i in _scheduling(node))


def _disk_gb(node: dict[str, Any]) -> int:
    disks = node.get("disks") or [{}]
    return int((disks[0].get("initializeParams") or {}).get("diskSizeGb", 10))


def _check_security(cfg: dict[str, Any], src: str) -> None:
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        text = " ".join(str(c) for c in cfg.get(key) or [])
        if re.search(r"--dashboard-host[= ]+0\.0\.0\.0", text):
            raise UserInputError(
                f"{src}: {key} binds the dashboard to 0.0.0.0; keep --dashboard-host=127.0.0.1 "
                "and open it with `ray dashboard CFG` (an SSH tunnel)")
        if "RAY_AUTH_MODE=disabled" in text or "RAY_AUTH_MODE=token" not in text:
            raise UserInputError(
                f"{src}: {key} must start Ray with `export RAY_AUTH_MODE=token` (token auth "
                "stays on for cloud clusters)")


def _external_ip(node: dict[str, Any]) -> bool:
    # No networkInterfaces: Ray's launcher gives the VM an external address (ONE_TO_ONE_NAT).
    nics = node.get("networkInterfaces")
    return not nics or any(nic.get("accessConfigs") for nic in nics if isinstance(nic, dict))


def _check_exposure(cfg: dict[str, Any], src: str) -> None:
    """What would be open to the internet or to code on a worker; one error line each."""
    types, head = cfg["available_node_types"], cfg["head_node_type"]
    tag = _get(cfg, "metadata.autolfads.network_tag")
    if not tag:
        raise UserInputError(
            f"{src}: metadata.autolfads.network_tag: missing; the firewall rule `cloud up` adds "
            "admits Ray's ports between nodes with this tag (rewrite the YAML with `autolfads "
            "cloud init ... --force`)")
    if _get(cfg, "provider.use_internal_ips") is not True:
        raise UserInputError(
            f"{src}: provider.use_internal_ips: must be true (nodes reach each other by their "
            "internal addresses; workers have no other)")
    for name, nt in types.items():
        path = f"available_node_types.{name}.node_config"
        node = nt["node_config"]
        if name != head and _external_ip(node):
            raise UserInputError(
                f"{src}: {path}.networkInterfaces: the workers get an external IP address, open "
                "to the internet on every port a firewall rule allows; use [{network: "
                "global/networks/default}] with no accessConfigs (Cloud NAT gives them PyPI)")
        if tag not in ((node.get("tags") or {}).get("items") or []):
            raise UserInputError(
                f"{src}: {path}.tags: add items: [{tag}] (the network tag the firewall rule for "
                "Ray's ports names; without it the nodes cannot reach each other)")
        if name != head:
            _check_account(node, f"{src}: {path}.serviceAccounts")
    hnode = types[head]["node_config"]
    if _get(cfg, "provider.use_external_head_ip") and not _external_ip(hnode):
        raise UserInputError(
            f"{src}: available_node_types.{head}.node_config.networkInterfaces: the head has no "
            "external IP but provider.use_external_head_ip is true (the laptop reaches it by "
            "SSH); add accessConfigs, or run the launcher inside the VPC (--launcher-in-vpc)")


def _check_account(node: dict[str, Any], field: str) -> None:
    accounts = node.get("serviceAccounts") or []
    if not accounts:
        raise UserInputError(
            f"{field}: missing; the workers would run as the project's default compute account "
            "(Editor on the project) and could not write the bucket")
    email = str(accounts[0].get("email", ""))
    broad = gcp_setup.CLOUD_PLATFORM in (accounts[0].get("scopes") or [])
    if broad and (email.startswith(gcp_setup.AUTOSCALER_ACCOUNT + "@")
                  or email.endswith("-compute@developer.gserviceaccount.com")):
        raise UserInputError(
            f"{field} {email}: that account may create VMs (or edit the whole project); code on "
            "a worker could too. Use the cluster's worker account (`autolfads cloud init ... "
            "--force` writes it; `cloud up` creates it with access to the bucket only)")


def _check_worker(name: str, nt: dict[str, Any], src: str) -> None:
    path = f"available_node_types.{name}"
    node = nt.get("node_config") or {}
    machine = str(node.get("machineType", ""))
    gcp.check_machine_type(machine, f"{src}: {path}.node_config.machineType")
    gpu = _gpu_of(node, machine)
    if gpu is None:
        raise UserInputError(
            f"{src}: {path}: no GPU (add guestAccelerators, or use a GPU machine type such as "
            "g2-standard-4); this cluster's workers are GPU nodes")
    accel = f"{src}: {path}.node_config.guestAccelerators"
    gcp.check_gpu(gpu[0], gpu[1], machine, (f"{accel}[0].acceleratorType",
                                           f"{accel}[0].acceleratorCount",
                                           f"{src}: {path}.node_config.machineType"))
    if not any(i.get("onHostMaintenance") == "TERMINATE" for i in _scheduling(node)):
        raise UserInputError(
            f"{src}: {path}.node_config.scheduling: GPU VMs need onHostMaintenance: TERMINATE")
    declared = (nt.get("resources") or {}).get("GPU")
    if declared != gpu[1]:
        raise UserInputError(
            f"{src}: {path}.resources.GPU {declared}: the VM has {gpu[1]} GPU(s); Ray must be "
            "told the same number")


def _check_node_types(cfg: dict[str, Any], src: str) -> None:
    types = cfg.get("available_node_types")
    head = cfg.get("head_node_type")
    if not isinstance(types, dict) or head not in types:
        raise UserInputError(
            f"{src}: head_node_type {head!r}: must name one of available_node_types")
    for name, nt in types.items():
        if not isinstance(nt, dict) or not isinstance(nt.get("node_config"), dict):
            raise UserInputError(f"{src}: available_node_types.{name}.node_config: missing")
        if _disk_gb(nt["node_config"]) < MIN_DISK_GB:
            raise UserInputError(
                f"{src}: available_node_types.{name}.node_config.disks[0].initializeParams."
                f"diskSizeGb {_disk_gb(nt['node_config'])}: at least {MIN_DISK_GB}")
        if name != head:
            _check_worker(name, nt, src)
    hnode = types[head]["node_config"]
    gcp.check_head_machine(str(hnode.get("machineType", "")),
                           f"{src}: available_node_types.{head}.node_config.machineType")
    res = types[head].get("resources") or {}
    if res.get("CPU") != 0 or res.get("GPU") or hnode.get("guestAccelerators"):
        raise UserInputError(
            f"{src}: available_node_types.{head}.resources: the head node only coordinates; set "
            "resources: {CPU: 0} and no GPUs, so no LFADS worker is scheduled there")
    if len(types) < 2:
        raise UserInputError(f"{src}: available_node_types: no GPU worker node type")


def _check_ray_schema(cfg: dict[str, Any], src: str) -> None:
    # Imported here: pulls in ray (~0.6 s), which `autolfads --help` should not pay for.
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(prepare_config(copy.deepcopy(cfg)))
    except jsonschema.ValidationError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "top level"
        msg = " ".join(e.message.split())
        raise UserInputError(f"{src}: {where}: {msg[:300]} (Ray's cluster schema)") from None
    except (ValueError, KeyError, TypeError, AssertionError, RuntimeError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise UserInputError(f"{src}: {msg[:300]} (Ray's cluster config check)") from None


def check_config(cfg: dict[str, Any], src: str) -> Shape | None:
    """Check `cfg` (read from `src`) and return its shape (None for a lab's own hosts: nothing
    to price); UserInputError on the first problem."""
    kind = _get(cfg, "provider.type")
    if kind == "local":
        check_local_config(cfg, src)
        _check_security(cfg, src)
        _check_ray_schema(cfg, src)
        return None
    if kind != "gcp":
        raise UserInputError(
            f"{src}: provider.type {kind!r}: autolfads cloud handles GCP clusters (type: gcp) "
            "and a lab's own hosts (type: local)")
    gcp.check_project(str(_get(cfg, "provider.project_id")), f"{src}: provider.project_id")
    zone = str(_get(cfg, "provider.availability_zone"))
    gcp.check_zone(zone, f"{src}: provider.availability_zone")
    gcp.check_region(str(_get(cfg, "provider.region")), zone, f"{src}: provider.region")
    gcp.check_cluster_name(str(cfg.get("cluster_name")), f"{src}: cluster_name")
    if "docker" in cfg:
        check_image(str(_get(cfg, "docker.image") or ""), f"{src}: docker.image")
    elif not _get(cfg, "metadata.autolfads.python"):
        raise UserInputError(
            f"{src}: metadata.autolfads.python: missing; without docker.image the nodes run "
            "autolfads from this Python (`cloud init` writes ~/autolfads-venv/bin/python)")
    key = "bucket" if _get(cfg, "metadata.autolfads.bucket") is not None else "storage"
    bucket = _get(cfg, f"metadata.autolfads.{key}")
    if bucket is not None:
        gcp.check_bucket(str(bucket), f"{src}: metadata.autolfads.{key}")
    try:  # these read the node configs as `cloud init` writes them; a hand edit may not
        _check_node_types(cfg, src)
        _check_exposure(cfg, src)
        _check_security(cfg, src)
        _check_ray_schema(cfg, src)
        return shape(cfg)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise UserInputError(f"{src}: {_wrong_shape(e)}; compare the node configs with the "
                             "YAML `autolfads cloud init` writes") from None


def _wrong_shape(e: Exception) -> str:
    """What a type error while reading a hand-edited node config means."""
    if isinstance(e, ValueError) and "invalid literal" in str(e):
        return f"a number was expected ({str(e).split(':', 1)[-1].strip()} is not one)"
    if isinstance(e, (KeyError, IndexError, AttributeError, TypeError)):
        return ("an entry has the wrong form: a list where a mapping belongs, or the other way "
                f"round (e.g. tags: {{items: [...]}}, disks: [ ... ]) ({type(e).__name__}: {e})")
    return str(e)


def shape(cfg: dict[str, Any]) -> Shape:
    """The cost-relevant facts of a checked config (its first GPU worker type)."""
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    name, nt = next((k, v) for k, v in types.items() if k != head)
    node = nt["node_config"]
    gpu = _gpu_of(node, node["machineType"]) or ("", 0)
    max_workers = int(nt.get("max_workers", cfg.get("max_workers", 0)))
    bucket = _get(cfg, "metadata.autolfads.bucket") or _get(cfg, "metadata.autolfads.storage")
    return Shape(head_machine=types[head]["node_config"]["machineType"],
                 worker_machine=node["machineType"], gpu_type=gpu[0], gpus_per_worker=gpu[1],
                 max_workers=min(max_workers, int(cfg.get("max_workers", max_workers))),
                 spot=_is_spot(node), disk_gb=_disk_gb(node),
                 bucket=str(bucket).rstrip("/") if bucket else None,
                 zone=str(_get(cfg, "provider.availability_zone")),
                 idle_timeout_minutes=float(cfg.get("idle_timeout_minutes", 5)),
                 worker_external_ip=_external_ip(node),
                 head_external_ip=_external_ip(types[head]["node_config"]),
                 wheel="docker" not in cfg)
