"""The Ray cluster-launcher YAML for GCP: written from flags (`cloud init`), checked offline
(`cloud validate`), and read back for the cost estimate and the bucket (`cloud up/submit`).

Shape (DESIGN.md §6): one CPU head node that only coordinates (the Tune driver, the autoscaler,
the job server; Ray is told it has 0 CPUs so no LFADS worker lands there) and one GPU worker node
type, all running our Docker image. Network exposure: Ray's GCP launcher creates no firewall
rules, and the default VPC admits only SSH (22), ICMP and RDP from outside, so Ray's ports (6379
GCS, 8265 dashboard/jobs, 10001 client) are reachable inside the VPC only, although Ray gives
each VM an ephemeral external address (outbound: image pull, driver install). Nodes talk over
internal IPs, the dashboard listens on 127.0.0.1 of the head, and users reach it through
`ray dashboard CFG` (an SSH tunnel). Token auth stays on: every node starts Ray with
RAY_AUTH_MODE=token and gets the launching user's token (~/.ray/auth_token) as a file mount.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autolfads import __version__, storage
from autolfads.cloud import gcp
from autolfads.errors import UserInputError

HEAD = "head"
WORKER = "gpu_worker"
# The launching user's Ray token, copied to every node; Ray's default token path on both sides.
TOKEN_MOUNT = {"~/.ray/auth_token": "~/.ray/auth_token"}
# A Deep Learning VM image: Docker and the NVIDIA container runtime preinstalled; the driver is
# installed at first boot (metadata install-nvidia-driver). The family Ray's own GCP GPU example
# uses; override with --host-image when Google retires it.
HOST_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu121"
MIN_DISK_GB = 50  # the host image plus our CUDA PyTorch image need about 40 GB
WAIT_FOR_DRIVER = ('timeout 600 bash -c "until nvidia-smi > /dev/null 2>&1; do sleep 5; done"')


@dataclass
class ClusterSpec:
    """Everything `cloud init` asks for; defaults are the tutorial's shape on current GPUs."""

    project: str
    bucket: str
    zone: str = "us-central1-a"
    region: str | None = None
    gpu_type: str = "nvidia-tesla-t4"
    gpus_per_worker: int = 1
    min_workers: int = 0
    max_workers: int = 8
    spot: bool = False
    disk_gb: int = 100
    image: str | None = None
    head_machine_type: str = "n1-standard-4"
    worker_machine_type: str | None = None
    cluster_name: str = "autolfads"
    host_image: str = HOST_IMAGE
    launcher_in_vpc: bool = False

    def resolved(self) -> ClusterSpec:
        """Check every field (UserInputError naming the flag) and fill the derived defaults."""
        s = copy.copy(self)
        gcp.check_project(s.project)
        region = gcp.check_zone(s.zone)
        s.region = gcp.check_region(s.region, s.zone) if s.region else region
        gcp.check_cluster_name(s.cluster_name)
        s.bucket = gcp.check_bucket(s.bucket)
        gcp.check_head_machine(s.head_machine_type)
        if s.gpus_per_worker < 1:
            raise UserInputError(f"--gpus-per-worker {s.gpus_per_worker}: must be at least 1")
        if s.gpu_type in gcp.GPUS and not gcp.GPUS[s.gpu_type].retired:
            s.worker_machine_type = s.worker_machine_type or gcp.default_worker_machine(
                s.gpu_type, s.gpus_per_worker)
        gcp.check_gpu(s.gpu_type, s.gpus_per_worker, s.worker_machine_type or "")
        if s.min_workers < 0 or s.max_workers < 1:
            raise UserInputError(
                f"--min-workers {s.min_workers} --max-workers {s.max_workers}: need "
                "min >= 0 and max >= 1")
        if s.min_workers > s.max_workers:
            raise UserInputError(
                f"--min-workers {s.min_workers}: more than --max-workers {s.max_workers}")
        if s.disk_gb < MIN_DISK_GB:
            raise UserInputError(
                f"--disk-gb {s.disk_gb}: at least {MIN_DISK_GB} GB (host image plus the CUDA "
                "PyTorch image)")
        s.image = s.image or (f"{s.region}-docker.pkg.dev/{s.project}/autolfads/"
                              f"autolfads:{__version__}")
        check_image(s.image, "--image")
        return s


def check_image(image: str, field: str) -> str:
    # A bare local tag (`make image` gives autolfads:VERSION) cannot be pulled by the cloud VMs.
    if not image or "/" not in image:
        raise UserInputError(
            f"{field} {image!r}: the VMs must pull the image from a registry; push it first, "
            "e.g. to REGION-docker.pkg.dev/PROJECT/autolfads/autolfads:VERSION (see README)")
    return image


def _disk(spec: ClusterSpec) -> list[dict[str, Any]]:
    return [{
        "boot": True, "autoDelete": True, "type": "PERSISTENT",
        "initializeParams": {
            "diskSizeGb": spec.disk_gb,
            "sourceImage": spec.host_image,
            # pd-balanced: pd-standard reads a 10 GB image at ~12 MB/s on 100 GB, and G2/A3
            # machine types refuse pd-standard altogether.
            "diskType": f"zones/{spec.zone}/diskTypes/pd-balanced",
        },
    }]


def _worker_node_config(spec: ClusterSpec) -> dict[str, Any]:
    scheduling: dict[str, Any] = {"onHostMaintenance": "TERMINATE", "automaticRestart": False}
    if spec.spot:
        # DELETE, not the default STOP: a stopped VM keeps its disk (and its bill), and Ray's
        # autoscaler starts fresh nodes rather than restarting stopped ones on GCP.
        scheduling.update(provisioningModel="SPOT", instanceTerminationAction="DELETE")
    node: dict[str, Any] = {
        "machineType": spec.worker_machine_type,
        "disks": _disk(spec),
        "metadata": {"items": [{"key": "install-nvidia-driver", "value": "True"}]},
        # GPU VMs cannot live-migrate; GCP requires TERMINATE on host maintenance.
        "scheduling": scheduling,
        # Workers write checkpoints to the bucket themselves; the default compute scopes are
        # read-only for storage. Ray's launcher creates this account (storage.objectAdmin).
        "serviceAccounts": [{
            "email": f"ray-autoscaler-sa-v1@{spec.project}.iam.gserviceaccount.com",
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        }],
    }
    if gcp.GPUS[spec.gpu_type].attached:
        node["guestAccelerators"] = [{"acceleratorType": spec.gpu_type,
                                      "acceleratorCount": spec.gpus_per_worker}]
    return node


def _init_commands(spec: ClusterSpec) -> list[str]:
    host = spec.image.split("/", 1)[0] if spec.image else ""
    if host.endswith("-docker.pkg.dev") or host.endswith("gcr.io"):
        # Runs on the VM before `docker pull`: lets Docker use the VM's service account.
        return [f"gcloud auth configure-docker {host} --quiet"]
    return []


def _start(head: bool) -> list[str]:
    # RAY_AUTH_MODE=token: fail loudly if the token is missing rather than start open.
    common = "ulimit -n 65536; export RAY_AUTH_MODE=token; ray start --object-manager-port=8076"
    if head:
        # The dashboard (and job server) on the head's loopback only: reach it through
        # `ray dashboard CFG`. Ray's example config binds it to 0.0.0.0.
        return ["ray stop", f"{common} --head --port=6379 --dashboard-host=127.0.0.1 "
                            "--autoscaling-config=~/ray_bootstrap_config.yaml"]
    return ["ray stop", f"{common} --address=$RAY_HEAD_IP:6379"]


def build_config(spec: ClusterSpec) -> dict[str, Any]:
    """The cluster-launcher config for a resolved spec (see `ClusterSpec.resolved`)."""
    worker_cpus = gcp.vcpus(spec.worker_machine_type or "")
    provider: dict[str, Any] = {
        "type": "gcp", "region": spec.region, "availability_zone": spec.zone,
        "project_id": spec.project,
        # Node-to-node traffic (GCS 6379, object manager, SSH from the head's autoscaler) over
        # the VPC's internal addresses.
        "use_internal_ips": True,
    }
    if not spec.launcher_in_vpc:
        # Only the laptop -> head SSH uses the head's external address (port 22).
        provider["use_external_head_ip"] = True
    init = _init_commands(spec)
    return {
        "cluster_name": spec.cluster_name,
        "max_workers": spec.max_workers,
        # Tune asks for the whole population at once; start all the nodes in one round.
        "upscaling_speed": float(max(spec.max_workers, 1)),
        "idle_timeout_minutes": 10,
        "docker": {
            "image": spec.image, "container_name": "autolfads", "pull_before_run": True,
            "run_options": ["--ulimit nofile=65536:65536"],
        },
        "provider": provider,
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            HEAD: {
                # 0 CPUs: Ray places no LFADS worker (a Tune trial) on the coordinator.
                "resources": {"CPU": 0},
                "max_workers": 0,
                "node_config": {"machineType": spec.head_machine_type, "disks": _disk(spec)},
            },
            WORKER: {
                "min_workers": spec.min_workers,
                "max_workers": spec.max_workers,
                "resources": {"CPU": worker_cpus, "GPU": spec.gpus_per_worker},
                "node_config": _worker_node_config(spec),
                "initialization_commands": [*init, WAIT_FOR_DRIVER],
            },
        },
        "head_node_type": HEAD,
        "file_mounts": dict(TOKEN_MOUNT),
        "initialization_commands": init,
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": _start(head=True),
        "worker_start_ray_commands": _start(head=False),
        # Ray does not interpret this section; `cloud submit/download` read the bucket from it.
        "metadata": {"autolfads": {"version": __version__, "bucket": spec.bucket}},
    }


HEADER = """\
# Ray cluster-launcher config for AutoLFADS on GCP, written by `autolfads cloud init`.
# Check edits with `autolfads cloud validate {name}`. Ray's ports stay inside the VPC:
# no firewall rule opens them, and the dashboard listens on the head's 127.0.0.1 only;
# open it with `ray dashboard {name}` (an SSH tunnel to http://127.0.0.1:8265).
# Nodes start Ray with RAY_AUTH_MODE=token and your ~/.ray/auth_token
# (`autolfads cloud up` creates it with `ray get-auth-token --generate`).
"""


def write_config(cfg: dict[str, Any], path: Path, force: bool = False) -> Path:
    if path.exists() and not force:
        raise UserInputError(f"{path}: file exists; pass --force to replace it")
    text = HEADER.format(name=path.name) + yaml.safe_dump(cfg, sort_keys=False, width=100)
    return storage.atomic_write(path, lambda tmp: tmp.write_text(text))


def load_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"{path}: not found (write one with `autolfads cloud init`)")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise UserInputError(f"{path}:{line} not valid YAML ({getattr(e, 'problem', e)})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: cannot read ({e})") from None
    if not isinstance(cfg, dict):
        raise UserInputError(f"{path}: expected a mapping of Ray cluster settings")
    return cfg
