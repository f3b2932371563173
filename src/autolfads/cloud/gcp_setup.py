"""What `cloud up` sets up in the GCP project before `ray up`, so the cluster is closed by default.

The generated YAML (cluster.py) gives the GPU workers no external address, tags every node, and
runs the workers as a service account of their own. For that to work the project needs:
- a Cloud NAT on the network's region, so workers without an external address still reach PyPI
  (the wheel's dependencies) and the NVIDIA driver download;
- Private Google Access on the region's default subnet, so bucket and Artifact Registry traffic
  goes straight to Google instead of through the NAT (which bills every GB it carries);
- a firewall rule that admits traffic to the tagged nodes from the tagged nodes only (Ray's
  ports, and SSH from the head's autoscaler); nothing from the internet;
- the worker service account, with object access to the run's bucket only. The head keeps Ray's
  autoscaler account (`ray up` creates it), which needs compute admin to create the workers: a
  worker running as that account could create VMs too.

`setup_commands` is pure: the exact gcloud argv, idempotent by construction. A create that finds
the thing already there fails harmlessly (`may_fail`); a describe after it then proves the thing
exists, so a create that failed for a real reason (an API off, no permission) still stops `up`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from autolfads.cloud.lifecycle import Cmd

NETWORK = "default"
AUTOSCALER_ACCOUNT = "ray-autoscaler-sa-v1"  # Ray's GCP launcher creates and uses this one
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SA_ID_MAX = 30  # GCP service-account ids are 6-30 characters


def network_tag(cluster_name: str) -> str:
    """The cluster's own network tag: a tag no default rule names (`http-server`, ...)."""
    return cluster_name if cluster_name.startswith("autolfads") else f"autolfads-{cluster_name}"


def worker_account_id(cluster_name: str) -> str:
    # One account per cluster: its bucket grant then reaches that cluster's workers only.
    base = network_tag(cluster_name)[: SA_ID_MAX - len("-worker")].rstrip("-")
    return f"{base}-worker"


def worker_account(cluster_name: str, project: str) -> str:
    return f"{worker_account_id(cluster_name)}@{project}.iam.gserviceaccount.com"


def autoscaler_account(project: str) -> str:
    return f"{AUTOSCALER_ACCOUNT}@{project}.iam.gserviceaccount.com"


def firewall_rule(tag: str) -> str:
    return f"{tag}-internal"


def router(network: str) -> str:
    # One router and NAT per network and region, shared by every autolfads cluster there.
    return f"autolfads-router-{network}"


def nat(network: str) -> str:
    return f"autolfads-nat-{network}"


def _interface_network(node: dict[str, Any]) -> str:
    nics = node.get("networkInterfaces") or [{}]
    return str(nics[0].get("network") or NETWORK).rsplit("/", 1)[-1]


def _registry_repo(image: str, project: str) -> tuple[str, str] | None:
    """(location, repository) of an Artifact Registry image in this project, else None."""
    host, _, path = image.partition("/")
    parts = path.split("/")
    if host.endswith("-docker.pkg.dev") and len(parts) >= 3 and parts[0] == project:
        return host.removesuffix("-docker.pkg.dev"), parts[1]
    return None


def _setup_names(cfg: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(project, region, network tag, network, worker account) of a generated GCP YAML."""
    prov = cfg["provider"]
    project, region = str(prov["project_id"]), str(prov["region"])
    meta = (cfg.get("metadata") or {}).get("autolfads") or {}
    tag = str(meta.get("network_tag") or network_tag(str(cfg["cluster_name"])))
    head = cfg["head_node_type"]
    workers = [nt["node_config"] for name, nt in cfg["available_node_types"].items()
               if name != head]
    network = _interface_network(workers[0])
    accounts = [a["email"] for w in workers for a in w.get("serviceAccounts") or []]
    account = accounts[0] if accounts else worker_account(str(cfg["cluster_name"]), project)
    return project, region, tag, network, account


def leftover_commands(cfg: dict[str, Any]) -> list[Cmd]:
    """What deletes the resources setup_commands made, which `cloud down` leaves (the rule and
    the account cost nothing; the NAT bills only while VMs use it)."""
    project, region, tag, network, account = _setup_names(cfg)
    p = ("--project", project, "--quiet")
    return [Cmd(("gcloud", "compute", "routers", "delete", router(network), "--region", region,
                 *p)),
            Cmd(("gcloud", "compute", "firewall-rules", "delete", firewall_rule(tag), *p)),
            Cmd(("gcloud", "iam", "service-accounts", "delete", account, *p))]


def setup_commands(cfg: dict[str, Any]) -> list[Cmd]:
    """The gcloud commands `cloud up` runs before `ray up` for a generated GCP YAML."""
    project, region, tag, network, account = _setup_names(cfg)
    meta = (cfg.get("metadata") or {}).get("autolfads") or {}
    p = ("--project", project)

    def gcloud(*args: str, may_fail: bool = False) -> Cmd:
        return Cmd(("gcloud", *args, *p), may_fail=may_fail)

    cmds = [
        gcloud("iam", "service-accounts", "create", account.split("@", 1)[0],
               "--display-name", f"autolfads workers of {cfg['cluster_name']}", may_fail=True),
        gcloud("compute", "firewall-rules", "create", firewall_rule(tag), "--network", network,
               "--direction", "INGRESS", "--action", "ALLOW", "--rules", "tcp,udp,icmp",
               "--source-tags", tag, "--target-tags", tag, may_fail=True),
        gcloud("compute", "routers", "create", router(network), "--network", network,
               "--region", region, may_fail=True),
        gcloud("compute", "routers", "nats", "create", nat(network), "--router", router(network),
               "--region", region, "--auto-allocate-nat-external-ips",
               "--nat-all-subnet-ip-ranges", may_fail=True),
    ]
    if network == NETWORK:
        # An auto-mode network names each region's subnet after itself.
        cmds.append(gcloud("compute", "networks", "subnets", "update", network, "--region",
                           region, "--enable-private-ip-google-access"))
    cmds += [
        gcloud("iam", "service-accounts", "describe", account, "--format=value(email)"),
        gcloud("compute", "firewall-rules", "describe", firewall_rule(tag),
               "--format=value(name)"),
        gcloud("compute", "routers", "nats", "describe", nat(network), "--router",
               router(network), "--region", region, "--format=value(name)"),
    ]
    bucket = meta.get("bucket") or meta.get("storage")
    if bucket:
        # Last: a new account takes a few seconds to be visible to IAM, and the NAT above
        # takes longer than that.
        cmds.append(Cmd(("gcloud", "storage", "buckets", "add-iam-policy-binding",
                         str(bucket).rstrip("/"), "--member", f"serviceAccount:{account}",
                         "--role", "roles/storage.objectAdmin")))
    image = str((cfg.get("docker") or {}).get("image") or "")
    repo = _registry_repo(image, project)
    if repo:
        # Both kinds of node pull the image: the head as the autoscaler account, which must
        # exist before it can be granted anything (Ray would create it in `ray up`).
        cmds.append(gcloud("iam", "service-accounts", "create", AUTOSCALER_ACCOUNT,
                           "--display-name", "Ray Autoscaler Service Account (v1)",
                           may_fail=True))
        for member in (account, autoscaler_account(project)):
            cmds.append(gcloud("artifacts", "repositories", "add-iam-policy-binding", repo[1],
                               "--location", repo[0], "--member", f"serviceAccount:{member}",
                               "--role", "roles/artifactregistry.reader"))
    return cmds


def check_token_file(path: Path | str = "~/.ray/auth_token") -> str | None:
    """Make the Ray token private (0600) if others can read it; say so, else None.

    `ray get-auth-token --generate` writes it with the process umask, and anyone who reads it
    can run jobs on the cluster."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        return None
    mode = stat.S_IMODE(p.stat().st_mode)
    if not mode & 0o077:
        return None
    p.chmod(0o600)
    return (f"{path}: was readable by others (mode {mode:o}); set it to 600 (the token lets "
            "anyone who has it run jobs on your cluster)")
