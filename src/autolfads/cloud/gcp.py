"""GCP names checked offline: project ids, zones, machine types, GPU types and how they combine.

Ray's schema treats `provider` and `node_config` as free-form (RAY_NOTES.md), so a typo there only
shows up minutes into `ray up` as a cloud API error. These checks catch it before anything starts.
They know the shape of names, not what a given project or zone offers today (quota, stock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autolfads.errors import UserInputError

# 6-30 characters, lowercase letters, digits and hyphens, starting with a letter, not ending with
# a hyphen; legacy domain-scoped ids ("example.com:my-project") keep the same rule after the colon.
PROJECT_RE = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")  # us-central1, northamerica-northeast1
ZONE_RE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-[a-z]$")  # us-central1-a
# GCE instance names are <= 63 characters; Ray prefixes "ray-" and appends "-head-<8 hex>".
CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
BUCKET_RE = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$")
MACHINE_RE = re.compile(
    r"^(?P<family>[a-z][a-z0-9]*)-(?P<kind>[a-z]+)-(?P<size>\d+)(?P<g>g?)$"
)
# Machine families without a GPU that make a reasonable head node (the coordinator).
CPU_FAMILIES = ("n1", "n2", "n2d", "n4", "e2", "c2", "c2d", "c3", "c3d", "c4", "t2d")
N1_KINDS = ("standard", "highmem", "highcpu")


@dataclass(frozen=True)
class GpuType:
    """A GCP accelerator and the machine types it runs on.

    `n1` GPUs are attached to an N1 VM (`guestAccelerators`); the newer ones come built into an
    accelerator-optimized machine type whose name fixes the GPU count (`machines`).
    """

    name: str
    counts: tuple[int, ...] = ()  # per N1 VM; empty when the machine type decides
    machines: tuple[tuple[str, int], ...] = ()  # (machine type, GPUs) for built-in GPUs
    retired: str = ""  # why it cannot be used any more (kept for the cost comparison)
    # Older than Turing (compute capability < 7.5): PyTorch's default CUDA build has no kernels
    # for it, so nodes install its CUDA 12.6 build (nodes.LEGACY_CUDA_TORCH_INDEX).
    pre_turing: bool = False

    @property
    def attached(self) -> bool:
        return not self.machines


GPUS: dict[str, GpuType] = {g.name: g for g in (
    GpuType("nvidia-tesla-k80", counts=(1, 2, 4, 8),
            retired="GCP retired K80 GPUs on 2024-05-01 and CUDA 12 PyTorch no longer "
                    "supports them; use t4 (nvidia-tesla-t4) or l4 (nvidia-l4)"),
    GpuType("nvidia-tesla-t4", counts=(1, 2, 4)),
    GpuType("nvidia-tesla-p4", counts=(1, 2, 4), pre_turing=True),
    GpuType("nvidia-tesla-p100", counts=(1, 2, 4), pre_turing=True),
    GpuType("nvidia-tesla-v100", counts=(1, 2, 4, 8), pre_turing=True),
    GpuType("nvidia-l4", machines=(("g2-standard-4", 1), ("g2-standard-8", 1),
                                   ("g2-standard-12", 1), ("g2-standard-16", 1),
                                   ("g2-standard-32", 1), ("g2-standard-24", 2),
                                   ("g2-standard-48", 4), ("g2-standard-96", 8))),
    GpuType("nvidia-tesla-a100", machines=(("a2-highgpu-1g", 1), ("a2-highgpu-2g", 2),
                                           ("a2-highgpu-4g", 4), ("a2-highgpu-8g", 8),
                                           ("a2-megagpu-16g", 16))),
    GpuType("nvidia-a100-80gb", machines=(("a2-ultragpu-1g", 1), ("a2-ultragpu-2g", 2),
                                          ("a2-ultragpu-4g", 4), ("a2-ultragpu-8g", 8))),
    GpuType("nvidia-h100-80gb", machines=(("a3-highgpu-1g", 1), ("a3-highgpu-2g", 2),
                                          ("a3-highgpu-4g", 4), ("a3-highgpu-8g", 8))),
)}

# The short names people type (`--gpu-type t4`) -> GCP's accelerator names.
ALIASES = {"t4": "nvidia-tesla-t4", "l4": "nvidia-l4", "k80": "nvidia-tesla-k80",
           "p4": "nvidia-tesla-p4", "p100": "nvidia-tesla-p100", "v100": "nvidia-tesla-v100",
           "a100": "nvidia-tesla-a100", "a100-80gb": "nvidia-a100-80gb",
           "h100": "nvidia-h100-80gb"}


def gpu_name(name: str) -> str:
    """GCP's accelerator name for `name` (an alias such as t4, or the name itself)."""
    key = (name or "").strip().lower()
    return ALIASES.get(key, key)


def known_gpus() -> str:
    """The GPUs `--gpu-type` accepts, for messages: "t4 (nvidia-tesla-t4), ..."."""
    short = {v: k for k, v in ALIASES.items()}
    return ", ".join(f"{short[g]} ({g})" if g in short else g for g in GPUS)


# vCPUs of the accelerator-optimized machine types (their names give the GPU count, not vCPUs).
_VCPUS = {"a2-highgpu": 12, "a2-ultragpu": 12, "a3-highgpu": 26}


def _match(regex: re.Pattern[str], value: str, field: str, problem: str) -> re.Match[str]:
    """`regex` matched against `value`; else UserInputError "FIELD 'VALUE': PROBLEM"."""
    m = regex.match(value or "")
    if not m:
        raise UserInputError(f"{field} {value!r}: {problem}")
    return m


def check_project(project: str, field: str = "--project") -> str:
    _match(PROJECT_RE, project, field,
           "not a GCP project id (6-30 lowercase letters, digits or hyphens, starting with a "
           "letter); see `gcloud projects list`")
    return project


def check_zone(zone: str, field: str = "--zone") -> str:
    """Return the zone's region ("us-central1-a" -> "us-central1")."""
    is_region = REGION_RE.match(zone or "")
    hint = " (that is a region; add the zone letter, e.g. -a)" if is_region else ""
    m = _match(ZONE_RE, zone, field,
               f"not a GCP zone{hint}; expected REGION-LETTER such as us-central1-a")
    return m.group(1)


def check_region(region: str, zone: str, field: str = "--region") -> str:
    _match(REGION_RE, region, field, "not a GCP region; expected e.g. us-central1")
    zone_region = check_zone(zone)
    if zone_region != region:
        raise UserInputError(f"{field} {region!r}: zone {zone} is in region {zone_region}")
    return region


def check_cluster_name(name: str, field: str = "--cluster-name") -> str:
    _match(CLUSTER_NAME_RE, name, field,
           "use 1-30 lowercase letters, digits or hyphens, starting with a letter (it becomes "
           "part of the VM names)")
    return name


def check_bucket(bucket: str, field: str = "--bucket") -> str:
    _match(BUCKET_RE, bucket, field,
           "expected a Cloud Storage URI such as gs://my-lab-autolfads (create it with "
           "`gcloud storage buckets create gs://NAME --location REGION`)")
    return bucket.rstrip("/")


def check_machine_type(machine: str, field: str) -> re.Match[str]:
    return _match(MACHINE_RE, machine, field,
                  "not a GCP machine type; expected e.g. n1-standard-4")


def vcpus(machine: str) -> int:
    """Number of vCPUs of a machine type (what Ray is told the node has)."""
    m = check_machine_type(machine, "machine type")
    prefix = f"{m['family']}-{m['kind']}"
    if m["g"]:
        if prefix == "a2-megagpu":
            return 96
        return _VCPUS.get(prefix, 12) * int(m["size"])
    return int(m["size"])


def check_head_machine(machine: str, field: str = "--head-machine-type") -> str:
    m = check_machine_type(machine, field)
    if m["family"] not in CPU_FAMILIES or m["g"]:
        raise UserInputError(
            f"{field} {machine!r}: the head node only coordinates (no GPU); use a CPU machine "
            f"type from the families {', '.join(CPU_FAMILIES)}, e.g. n1-standard-4")
    return machine


def check_gpu(gpu_type: str, count: int, machine: str,
              fields: tuple[str, str, str] = ("--gpu-type", "--gpus-per-worker",
                                               "--worker-machine-type")) -> GpuType:
    """Check that `count` GPUs of `gpu_type` run on `machine`; return the GPU type.

    `fields` names the three values in messages: flags for `cloud init`, YAML paths for
    `cloud validate`.
    """
    field, count_field, machine_field = fields
    gpu = GPUS.get(gpu_type)
    if gpu is None and gpu_name(gpu_type) in GPUS:
        # A cluster YAML goes to the Compute API as is, which knows only the long names.
        raise UserInputError(f"{field} {gpu_type!r}: write GCP's name, {gpu_name(gpu_type)}")
    if gpu is None:
        raise UserInputError(
            f"{field} {gpu_type!r}: not a known GCP GPU; choose one of {known_gpus()}")
    if gpu.retired:
        raise UserInputError(f"{field} {gpu_type}: {gpu.retired}")
    m = check_machine_type(machine, machine_field)
    if gpu.attached:
        if count not in gpu.counts:
            raise UserInputError(
                f"{count_field} {count}: {gpu_type} comes in groups of "
                f"{', '.join(map(str, gpu.counts))} per VM")
        if m["family"] != "n1" or m["kind"] not in N1_KINDS or m["g"]:
            raise UserInputError(
                f"{machine_field} {machine}: {gpu_type} attaches to N1 machine types "
                f"only, e.g. {default_worker_machine(gpu_type, count)}")
        return gpu
    allowed = dict(gpu.machines)
    if machine not in allowed:
        raise UserInputError(
            f"{machine_field} {machine}: {gpu_type} comes built into the machine types "
            f"{', '.join(allowed)}")
    if allowed[machine] != count:
        raise UserInputError(
            f"{count_field} {count}: {machine} has {allowed[machine]} {gpu_type} GPU(s)")
    return gpu


def default_worker_machine(gpu_type: str, count: int) -> str:
    """The smallest sensible VM for `count` GPUs: 4 vCPUs per N1 GPU, so several LFADS workers
    can share one GPU (`--workers-per-gpu`), each with a core for data loading."""
    gpu = GPUS.get(gpu_type)
    if gpu is None or gpu.attached:
        return f"n1-standard-{4 * count}"
    for machine, n in gpu.machines:
        if n == count:
            return machine
    counts = sorted({n for _, n in gpu.machines})
    raise UserInputError(
        f"--gpus-per-worker {count}: {gpu_type} machines have {', '.join(map(str, counts))} GPUs")


def gpu_of_machine(machine: str) -> tuple[str, int] | None:
    """(GPU type, count) built into an accelerator-optimized machine type, else None."""
    for gpu in GPUS.values():
        for name, n in gpu.machines:
            if name == machine:
                return gpu.name, n
    return None
