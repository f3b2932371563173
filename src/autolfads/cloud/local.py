"""A lab's own machines as the cluster: Ray's on-premise provider (`provider: type: local`).

The hosts are given by address and reached over SSH; Ray's launcher starts Ray on the head, and
the head's autoscaler starts it on every worker. The lifecycle (`cloud up/submit/status/
download/stop/down`) is the same as on GCP; only node provisioning differs. Settings a real lab
cluster needs and Ray does not default sensibly (measured, RAY_NOTES.md):
- the head advertises the address it was given (`--node-ip-address`), not 127.0.0.1;
- the v1 autoscaler (v2 never starts an on-premise cluster's workers);
- RAY_AUTH_MODE=token explicitly on every node, the laptop's token sent as a file mount;
- `ray[default]` on the head (the job server), which the installed wheel's pins include.

The run's storage must be a place every host sees under the same path (an NFS mount) or a
bucket: PBT workers on other hosts write their checkpoints there themselves.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolfads import __version__
from autolfads.cloud import nodes
from autolfads.errors import UserInputError
from autolfads.rundir.layout import is_uri

NODE_TYPE = "local.cluster.node"  # Ray's own name for an on-premise node type


@dataclass
class LocalSpec:
    head_ip: str
    worker_ips: list[str]
    ssh_user: str
    ssh_key: str
    storage: str  # runs go to STORAGE/runs/NAME: a path every host sees, or a bucket URI
    cluster_name: str = field(default_factory=lambda: default_cluster_name())
    python: str | None = None  # an existing interpreter with autolfads on every host
    gpus: bool = False  # do the hosts have GPUs (which torch build to install)
    wheel_dir: str | None = None  # where `cloud up` builds the wheel (default: beside the YAML)
    object_store_mb: int | None = None  # Ray's default takes 30% of each host's memory

    def resolved(self, yaml_path: Path) -> LocalSpec:
        ips = [check_ip(self.head_ip, "--head-ip")]
        for ip in self.worker_ips:
            ips.append(check_ip(ip, "--worker-ips"))
        if len(set(ips)) != len(ips):
            raise UserInputError(f"--head-ip/--worker-ips {','.join(ips)}: an address is "
                                 "listed twice")
        if not self.ssh_user:
            raise UserInputError("--ssh-user: needed (the account Ray logs in as on every host)")
        key = Path(self.ssh_key).expanduser()
        if not key.is_file():
            raise UserInputError(f"--ssh-key {self.ssh_key}: file not found (a private key "
                                 "that logs in to every host, e.g. ~/.ssh/id_ed25519)")
        if not is_uri(self.storage) and not Path(self.storage).is_absolute():
            raise UserInputError(f"--storage {self.storage}: give an absolute path that every "
                                 "host sees (e.g. an NFS mount) or a bucket URI")
        if self.python is not None and not Path(self.python).is_absolute():
            raise UserInputError(f"--python {self.python}: give the absolute path of the "
                                 "interpreter on the hosts, e.g. /opt/autolfads/bin/python")
        from autolfads.cloud.gcp import check_cluster_name

        check_cluster_name(self.cluster_name)
        return LocalSpec(
            head_ip=ips[0], worker_ips=ips[1:], ssh_user=self.ssh_user, ssh_key=str(key.resolve()),
            storage=self.storage.rstrip("/"), cluster_name=self.cluster_name,
            python=self.python, gpus=self.gpus, object_store_mb=self.object_store_mb,
            wheel_dir=self.wheel_dir or str(yaml_path.resolve().parent / "autolfads-wheel"))


def default_cluster_name() -> str:
    """autolfads-USER: two people of one lab (or one GCP project) get two clusters, and one's
    `down` never deletes the other's."""
    user = "".join(c for c in (os.environ.get("USER") or "user").lower()
                   if c.isalnum() or c == "-")
    return f"autolfads-{user or 'user'}"[:30].rstrip("-")


def check_ip(ip: str, field: str) -> str:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise UserInputError(f"{field} {ip!r}: not an IP address (give each host's address, "
                             "e.g. 192.168.1.10)") from None


def node_python(spec: LocalSpec) -> nodes.NodePython:
    return nodes.existing_python(spec.python) if spec.python else nodes.NodePython()


def build_local_config(spec: LocalSpec) -> dict[str, Any]:
    """The cluster-launcher config for a resolved `LocalSpec`."""
    node = node_python(spec)
    mounts = {"~/.ray/auth_token": "~/.ray/auth_token"}
    meta: dict[str, Any] = {"version": __version__, "storage": spec.storage,
                            "python": node.python, "gpus": spec.gpus}
    if node.install:
        mounts[nodes.REMOTE_WHEEL_DIR] = spec.wheel_dir or ""
        meta["wheel_dir"] = spec.wheel_dir
    n = len(spec.worker_ips)
    return {
        "cluster_name": spec.cluster_name,
        "provider": {"type": "local", "head_ip": spec.head_ip, "worker_ips": spec.worker_ips},
        "auth": {"ssh_user": spec.ssh_user, "ssh_private_key": spec.ssh_key},
        # Every listed host joins: a lab's machines are there to be used, not scaled.
        "min_workers": n,
        "max_workers": n,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "file_mounts": mounts,
        "setup_commands": nodes.setup_commands(node, gpu=spec.gpus),
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": nodes.start_commands(
            node, head=True, head_ip=spec.head_ip, autoscaler_v1=True,
            object_store_mb=spec.object_store_mb),
        "worker_start_ray_commands": nodes.start_commands(
            node, head=False, autoscaler_v1=True, object_store_mb=spec.object_store_mb),
        # Ray does not read this section; `cloud submit/status/download` do.
        "metadata": {"autolfads": meta},
    }


HEADER = """\
# Ray cluster-launcher config for AutoLFADS on your own hosts (on-premise provider), written by
# `autolfads cloud init --provider local`. Ray logs in to every host over SSH as auth.ssh_user.
# Ray's ports (6379, 8076, the workers' ports) must be open between the hosts, and only there:
# the dashboard listens on the head's 127.0.0.1 (`ray dashboard {name}` opens a tunnel).
# Nodes start Ray with RAY_AUTH_MODE=token and your ~/.ray/auth_token.
# Runs are stored under metadata.autolfads.storage, which every host must see at that path.
"""


def check_local_config(cfg: dict[str, Any], src: str) -> None:
    """What Ray's schema leaves free-form for an on-premise cluster, and our security rules."""
    prov = cfg.get("provider") or {}
    check_ip(str(prov.get("head_ip", "")), f"{src}: provider.head_ip")
    ips = prov.get("worker_ips")
    if not isinstance(ips, list):
        raise UserInputError(f"{src}: provider.worker_ips: expected a list of addresses")
    for i, ip in enumerate(ips):
        check_ip(str(ip), f"{src}: provider.worker_ips[{i}]")
    auth = cfg.get("auth") or {}
    if not auth.get("ssh_user"):
        raise UserInputError(f"{src}: auth.ssh_user: missing")
    key = auth.get("ssh_private_key")
    if key and not Path(str(key)).expanduser().is_file():
        raise UserInputError(f"{src}: auth.ssh_private_key {key}: file not found")
    head = " ".join(str(c) for c in cfg.get("head_start_ray_commands") or [])
    if "--node-ip-address" not in head:
        raise UserInputError(
            f"{src}: head_start_ray_commands: add --node-ip-address=HEAD_IP to `ray start "
            "--head` (else the head may advertise 127.0.0.1 and no worker can join)")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        text = " ".join(str(c) for c in cfg.get(key) or [])
        if "RAY_enable_autoscaler_v2=0" not in text:
            raise UserInputError(
                f"{src}: {key}: add `export RAY_enable_autoscaler_v2=0;` before `ray start` "
                "(Ray 2.60's v2 autoscaler never starts an on-premise cluster's workers)")
