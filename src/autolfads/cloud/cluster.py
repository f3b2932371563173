"""The Ray cluster-launcher YAML for GCP: written from flags (`cloud init`), checked offline
(`cloud validate`), and read back for the cost estimate and the bucket (`cloud up/submit`).

Shape (DESIGN.md §6): one CPU head node that only coordinates (the Tune driver, the autoscaler,
the job server; Ray is told it has 0 CPUs so no LFADS worker lands there) and one GPU worker node
type. Nodes boot the stock Deep Learning VM image (NVIDIA driver) and install this package from a
wheel that `cloud up` builds (nodes.py); `--image` runs a Docker image instead.

Network exposure, closed by default: GPU workers have no external address (they reach PyPI
through a Cloud NAT and Google's APIs through Private Google Access, both set up by `cloud up`,
see gcp_setup.py); only the head has one, for the laptop's SSH (port 22, the default network's
rule). Every node carries the cluster's network tag, and the one firewall rule `cloud up` adds
admits Ray's ports between tagged nodes only. The dashboard listens on 127.0.0.1 of the head
(`ray dashboard CFG` is an SSH tunnel). Token auth stays on: every node starts Ray with
RAY_AUTH_MODE=token and gets the launching user's token (~/.ray/auth_token) as a file mount.
Workers run as a service account that can only read and write the run's bucket.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autolfads import __version__
from autolfads.cloud import gcp, gcp_setup, nodes
from autolfads.cloud.local import default_cluster_name
from autolfads.errors import UserInputError
from autolfads.rundir.location import atomic_write

HEAD = "head"
WORKER = "gpu_worker"
# The launching user's Ray token, copied to every node; Ray's default token path on both sides.
TOKEN_MOUNT = {"~/.ray/auth_token": "~/.ray/auth_token"}
# A Deep Learning VM image: the NVIDIA driver is installed at first boot (metadata
# install-nvidia-driver), Docker and the NVIDIA container runtime are there for --image. Google
# retires these families (common-cu121, the Debian 11 one Ray's own example used, is gone);
# Ubuntu 24.04 because its python3 (3.12) meets our requires-python (Ubuntu 22.04 has 3.10).
# `cloud doctor` checks that the family still exists; override with --host-image.
HOST_IMAGE = ("projects/deeplearning-platform-release/global/images/family/"
              "common-cu129-ubuntu-2404-nvidia-580")
MIN_DISK_GB = 50  # the host image plus CUDA PyTorch (wheel or image) need about 40 GB
WAIT_FOR_DRIVER = ('timeout 600 bash -c "until nvidia-smi > /dev/null 2>&1; do sleep 5; done"')
WHEEL_DIR = "autolfads-wheel"  # beside the YAML; `cloud up` builds the wheel into it
# Before nodes.setup_commands: make the venv with the system Python 3 (a login shell may put
# another python3 first), install python3-venv where the image lacks it, and stop with a clear
# line on an image whose Python is too old for the wheel.
ENSURE_VENV = (
    f"test -x {nodes.VENV}/bin/python || {{ /usr/bin/python3 -c 'import sys; "
    "sys.exit(sys.version_info < (3, 11))' || { echo 'error: the host image has Python < 3.11; "
    "autolfads needs 3.11+ (use an Ubuntu 24.04 image, --host-image)'; exit 1; }; "
    "/usr/bin/python3 -c 'import ensurepip' 2> /dev/null || { sudo apt-get update -q && "
    "sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-venv; }; "
    f"/usr/bin/python3 -m venv {nodes.VENV}; }}")
# The head's autoscaler creates the GCP worker VMs through Google's API client.
GOOGLE_CLIENT = f"{nodes.VENV}/bin/pip install -q google-api-python-client"


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
    image: str | None = None  # None: install the wheel on the stock image (no Docker)
    head_machine_type: str = "n1-standard-4"
    worker_machine_type: str | None = None
    cluster_name: str = field(default_factory=default_cluster_name)
    host_image: str = HOST_IMAGE
    launcher_in_vpc: bool = False
    wheel_dir: str | None = None  # absolute; default: autolfads-wheel beside the YAML

    def resolved(self, yaml_path: Path = Path("cluster.yaml")) -> ClusterSpec:
        """Check every field (UserInputError naming the flag) and fill the derived defaults."""
        s = copy.copy(self)
        gcp.check_project(s.project)
        region = gcp.check_zone(s.zone)
        s.region = gcp.check_region(s.region, s.zone) if s.region else region
        gcp.check_cluster_name(s.cluster_name)
        s.bucket = gcp.check_bucket(s.bucket)
        gcp.check_head_machine(s.head_machine_type)
        s.gpu_type = gcp.gpu_name(s.gpu_type)
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
                f"--disk-gb {s.disk_gb}: at least {MIN_DISK_GB} GB (host image plus CUDA "
                "PyTorch)")
        if s.image is not None:
            check_image(s.image, "--image")
        else:
            s.wheel_dir = s.wheel_dir or str(yaml_path.resolve().parent / WHEEL_DIR)
        return s

    @property
    def node(self) -> nodes.NodePython:
        return nodes.IMAGE_PYTHON if self.image else nodes.NodePython()


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


def _network(external_ip: bool) -> list[dict[str, Any]]:
    # Given for every node type, so Ray's launcher skips its default: an external address
    # (accessConfigs ONE_TO_ONE_NAT) on every VM.
    nic: dict[str, Any] = {"network": f"global/networks/{gcp_setup.NETWORK}"}
    if external_ip:
        nic["accessConfigs"] = [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    return [nic]


def _head_node_config(spec: ClusterSpec) -> dict[str, Any]:
    # The head's service account is Ray's autoscaler account (set by `ray up`): it creates VMs.
    return {"machineType": spec.head_machine_type, "disks": _disk(spec),
            "networkInterfaces": _network(external_ip=not spec.launcher_in_vpc),
            "tags": {"items": [gcp_setup.network_tag(spec.cluster_name)]}}


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
        "networkInterfaces": _network(external_ip=False),
        "tags": {"items": [gcp_setup.network_tag(spec.cluster_name)]},
        # Workers write checkpoints to the bucket themselves; their own account may do only
        # that (gcp_setup grants it the bucket), unlike the head's, which creates VMs.
        "serviceAccounts": [{
            "email": gcp_setup.worker_account(spec.cluster_name, spec.project),
            "scopes": [gcp_setup.CLOUD_PLATFORM],
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


def build_config(spec: ClusterSpec) -> dict[str, Any]:
    """The cluster-launcher config for a resolved spec (see `ClusterSpec.resolved`)."""
    worker_cpus = gcp.vcpus(spec.worker_machine_type or "")
    provider: dict[str, Any] = {
        "type": "gcp", "region": spec.region, "availability_zone": spec.zone,
        "project_id": spec.project,
        # Node-to-node traffic (GCS 6379, object manager, SSH from the head's autoscaler) over
        # the VPC's internal addresses; workers have no other.
        "use_internal_ips": True,
    }
    if not spec.launcher_in_vpc:
        # Only the laptop -> head SSH uses the head's external address (port 22).
        provider["use_external_head_ip"] = True
    node = spec.node
    init = _init_commands(spec)
    mounts = dict(TOKEN_MOUNT)
    meta: dict[str, Any] = {"version": __version__, "bucket": spec.bucket,
                            "python": node.python,
                            "network_tag": gcp_setup.network_tag(spec.cluster_name)}
    cfg: dict[str, Any] = {
        "cluster_name": spec.cluster_name,
        "max_workers": spec.max_workers,
        # Tune asks for the whole population at once; start all the nodes in one round.
        "upscaling_speed": float(max(spec.max_workers, 1)),
        "idle_timeout_minutes": 10,
    }
    if spec.image:
        cfg["docker"] = {
            "image": spec.image, "container_name": "autolfads", "pull_before_run": True,
            "run_options": ["--ulimit nofile=65536:65536"],
        }
        head_setup: list[str] = []
        worker_setup: list[str] = []
    else:
        mounts[nodes.REMOTE_WHEEL_DIR] = spec.wheel_dir or ""
        meta["wheel_dir"] = spec.wheel_dir
        # The head only coordinates: the small CPU build of torch; workers the CUDA one.
        head_setup = [ENSURE_VENV, *nodes.setup_commands(node, gpu=False), GOOGLE_CLIENT]
        gpu = gcp.GPUS.get(spec.gpu_type)
        worker_setup = [ENSURE_VENV, *nodes.setup_commands(
            node, gpu=True, pre_turing=bool(gpu and gpu.pre_turing))]
    cfg.update({
        "provider": provider,
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            HEAD: {
                # 0 CPUs: Ray places no LFADS worker (a Tune trial) on the coordinator.
                "resources": {"CPU": 0},
                "max_workers": 0,
                "node_config": _head_node_config(spec),
            },
            WORKER: {
                "min_workers": spec.min_workers,
                "max_workers": spec.max_workers,
                "resources": {"CPU": worker_cpus, "GPU": spec.gpus_per_worker},
                "node_config": _worker_node_config(spec),
                # The driver installs at first boot; CUDA torch must not start before it.
                "initialization_commands": [*init, WAIT_FOR_DRIVER],
            },
        },
        "head_node_type": HEAD,
        "file_mounts": mounts,
        "initialization_commands": init,
        "setup_commands": [],
        "head_setup_commands": head_setup,
        "worker_setup_commands": worker_setup,
        "head_start_ray_commands": nodes.start_commands(node, head=True),
        "worker_start_ray_commands": nodes.start_commands(node, head=False),
        # Ray does not interpret this section; `cloud up/submit/download` read it.
        "metadata": {"autolfads": meta},
    })
    return cfg


HEADER = """\
# Ray cluster-launcher config for AutoLFADS on GCP, written by `autolfads cloud init`.
# Check edits with `autolfads cloud validate {name}`. Closed by default: GPU workers have no
# external address (Cloud NAT for PyPI), every node carries the cluster's network tag and the
# firewall rule `cloud up` adds admits Ray's ports between tagged nodes only; the dashboard
# listens on the head's 127.0.0.1: open it with `ray dashboard {name}` (an SSH tunnel to
# http://127.0.0.1:8265). Nodes start Ray with RAY_AUTH_MODE=token and your ~/.ray/auth_token
# (`autolfads cloud up` creates it with `ray get-auth-token --generate`).
"""


def write_config(cfg: dict[str, Any], path: Path, force: bool = False,
                 header: str = HEADER) -> Path:
    if path.exists() and not force:
        raise UserInputError(f"{path}: file exists; pass --force to replace it")
    text = header.format(name=path.name) + yaml.safe_dump(cfg, sort_keys=False, width=100)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


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
