"""Cost estimate of a cluster run from the dated price table shipped in `prices.yaml`.

What the bill holds, not only the run itself:
- GPU workers: GPUs + VMs + boot disks for the run, plus each worker's boot (the NVIDIA driver
  installs at first boot, then the wheel's CUDA PyTorch, or the image pull) and the idle timeout
  (the autoscaler removes a worker `idle_timeout_minutes` after its last task);
- the head (always on demand: a preempted head would stop the whole run), its disk and its
  external IP address from `cloud up` to `cloud down`: the run plus an overhead;
- Cloud NAT, which workers without an external address use to reach PyPI: per worker-hour,
  per GB carried (the wheel's dependencies, ~3 GB per worker) and its own address;
- the bucket for a month (outputs outlive the cluster).
Network egress, taxes and discounts are left out and the output says so. Prices are one
region's; the estimate names it when the cluster's region may be priced differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from autolfads.cloud import gcp
from autolfads.cloud.validate import Shape
from autolfads.errors import UserInputError

HOURS_PER_MONTH = 730.0  # GCP's billing month
DISK_TYPE = "pd-balanced"  # what `cloud init` configures
_MAPS = ("gpu_per_hour", "vm_per_hour", "disk_per_gb_month")
_FLAT = ("ip_per_hour", "nat")  # mappings of plain prices, merged key by key
# Stated defaults of what the bill holds beyond the run (each a parameter of `estimate`):
BOOT_MINUTES = 10.0  # a worker's boot: driver install + CUDA PyTorch wheels, or the image pull
IDLE_MINUTES = 10.0  # idle_timeout_minutes of the generated YAML
HEAD_OVERHEAD_HOURS = 0.5  # head boot and setup before the run, and the wait for `cloud down`
NAT_GB_PER_WORKER = 3.0  # CUDA PyTorch + Ray from PyPI through the NAT (an image: 0, see below)


@dataclass
class Prices:
    table: dict[str, Any]
    dates: list[str] = field(default_factory=list)  # built-in date, then the user file's

    @property
    def date(self) -> str:
        return " / ".join(self.dates)

    def _hourly(self, section: str, name: str, spot: bool, what: str) -> float:
        entry = self.table[section].get(name)
        if entry is None:
            known = ", ".join(sorted(self.table[section]))
            raise UserInputError(
                f"{what} {name}: no price in the table ({known}); add it with --prices FILE")
        return float(entry["spot" if spot else "on_demand"])

    def gpu(self, name: str, spot: bool) -> float:
        if name not in self.table["gpu_per_hour"] and name not in gcp.GPUS:
            raise UserInputError(f"--gpu-type {name!r}: not a known GCP GPU; choose one of "
                                 f"{gcp.known_gpus()}")
        return self._hourly("gpu_per_hour", name, spot, "--gpu-type")

    def vm(self, name: str, spot: bool, what: str = "machine type") -> float:
        return self._hourly("vm_per_hour", name, spot, what)

    def note(self, gpu: str) -> str:
        return str(self.table["gpu_per_hour"].get(gpu, {}).get("note", ""))

    def flat(self, section: str, key: str) -> float:
        return float((self.table.get(section) or {}).get(key, 0.0))

    @property
    def region(self) -> str:
        return str(self.table.get("region", "us-central1"))

    def region_note(self, region: str | None) -> str | None:
        """A line when the table may not price `region` (None when it does)."""
        same = [self.region, *(self.table.get("same_price_regions") or [])]
        if region is None or region in same:
            return None
        return (f"prices for {self.region}; your region {region} may differ (e.g. N1 VMs list "
                "about 10% higher in europe-west4): check the GCP pricing calculator")


def _read_table(path: Path | None) -> dict[str, Any]:
    src = str(path) if path else "built-in prices.yaml"
    try:
        if path is None:
            text = resources.files("autolfads.cloud").joinpath("prices.yaml").read_text()
        else:
            text = path.read_text()
        # JSON is YAML, so one parser reads both kinds of user file.
        table = yaml.safe_load(text)
    except FileNotFoundError:
        raise UserInputError(f"--prices {src}: not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"--prices {src}: cannot read ({e})") from None
    except yaml.YAMLError as e:
        raise UserInputError(f"--prices {src}: not valid YAML or JSON ({e})") from None
    if not isinstance(table, dict) or not table.get("date"):
        raise UserInputError(
            f"--prices {src}: expected a mapping with a `date:` field (when the prices were "
            "valid) and sections gpu_per_hour, vm_per_hour, disk_per_gb_month, "
            "bucket_per_gb_month")
    for section in _FLAT:
        for name, price in (table.get(section) or {}).items():
            if not isinstance(price, int | float) or price < 0:
                raise UserInputError(f"--prices {src}: {section}.{name}: expected a price")
    for section in _MAPS:
        for name, entry in (table.get(section) or {}).items():
            keys = ("on_demand", "spot") if section != "disk_per_gb_month" else ()
            ok = all(isinstance(entry, dict) and isinstance(entry.get(k), int | float)
                     and entry[k] >= 0 for k in keys) if keys else (
                isinstance(entry, int | float) and entry >= 0)
            if not ok:
                want = "{on_demand: X, spot: Y}" if keys else "a price per GB-month"
                raise UserInputError(f"--prices {src}: {section}.{name}: expected {want}")
    return table


def load_prices(user_file: Path | None = None) -> Prices:
    """The built-in table, with the entries of `user_file` (if any) replacing its own."""
    table = _read_table(None)
    prices = Prices(table, [str(table["date"])])
    if user_file is not None:
        user = _read_table(user_file)
        for section in (*_MAPS, *_FLAT):
            table[section] = {**table.get(section, {}), **(user.get(section) or {})}
        if "bucket_per_gb_month" in user:
            table["bucket_per_gb_month"] = user["bucket_per_gb_month"]
        prices.dates.append(f"{user['date']} ({user_file.name})")
    return prices


@dataclass(frozen=True)
class Line:
    item: str
    detail: str
    usd: float


@dataclass(frozen=True)
class Estimate:
    title: str
    lines: tuple[Line, ...]
    date: str
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)

    def get(self, item: str) -> float:
        return sum(line.usd for line in self.lines if line.item == item)

    def render(self) -> str:
        width = max(len(line.detail) for line in self.lines)
        rows = [self.title]
        rows += [f"  {ln.item:<7} {ln.detail:<{width}}  ${ln.usd:9.2f}" for ln in self.lines]
        rows.append(f"  {'total':<7} {'':<{width}}  ${self.total:9.2f}")
        rows.append(f"Price table date: {self.date} (list prices; excludes network egress, "
                    "taxes and discounts; spot prices change often).")
        rows += [f"Note: {n}" for n in self.notes]
        return "\n".join(rows)


def estimate(gpus: int, gpu_type: str, hours: float, spot: bool = False, *,
             gpus_per_node: int = 1, machine_type: str | None = None,
             head_machine_type: str = "n1-standard-4", disk_gb: int = 100,
             storage_gb: float = 10.0, prices: Prices | None = None,
             region: str | None = None, boot_minutes: float = BOOT_MINUTES,
             idle_minutes: float = IDLE_MINUTES,
             head_overhead_hours: float = HEAD_OVERHEAD_HOURS,
             nat_gb_per_worker: float = NAT_GB_PER_WORKER, worker_external_ip: bool = False,
             head_external_ip: bool = True) -> Estimate:
    """Estimate a run on `gpus` GPUs of `gpu_type` for `hours` (whole cluster busy throughout).

    Each worker is billed for boot + run + idle timeout; the head for the run plus
    `head_overhead_hours`. Workers without an external IP use the Cloud NAT."""
    gpu_type = gcp.gpu_name(gpu_type)
    if gpus < 1:
        raise UserInputError(f"--gpus {gpus}: must be at least 1")
    if not hours > 0:
        raise UserInputError(f"--hours {hours}: must be more than 0")
    if gpus_per_node < 1:
        raise UserInputError(f"--gpus-per-node {gpus_per_node}: must be at least 1")
    if storage_gb < 0 or disk_gb < 0:
        raise UserInputError("--storage-gb and --disk-gb: must not be negative")
    if min(boot_minutes, idle_minutes, head_overhead_hours, nat_gb_per_worker) < 0:
        raise UserInputError("--boot-minutes, --idle-minutes, --overhead-hours and "
                             "--nat-gb-per-worker: must not be negative")
    prices = prices or load_prices()
    nodes = math.ceil(gpus / gpus_per_node)
    machine = machine_type or gcp.default_worker_machine(gpu_type, gpus_per_node)
    kind = "spot" if spot else "on-demand"
    gpu_h, vm_h = prices.gpu(gpu_type, spot), prices.vm(machine, spot, "--machine-type")
    head_h = prices.vm(head_machine_type, False, "--head-machine-type")
    disk_m = float(prices.table["disk_per_gb_month"][DISK_TYPE])
    bucket_m = float(prices.table["bucket_per_gb_month"])
    n_gpus = nodes * gpus_per_node
    worker_hours = hours + (boot_minutes + idle_minutes) / 60  # each worker's billed time
    head_hours = hours + head_overhead_hours
    w, hh = f"{worker_hours:.2f} h", f"{head_hours:g} h"
    ip_worker = prices.flat("ip_per_hour", "spot" if spot else "on_demand")
    ip_head = prices.flat("ip_per_hour", "on_demand")
    who = [f"head x {hh}"] if head_external_ip else []
    who += [f"{nodes} worker(s) x {w}"] if worker_external_ip else []
    nat_users = 0 if worker_external_ip else nodes
    nat_vm, nat_gb, nat_ip = (prices.flat("nat", k) for k in ("per_vm_hour", "per_gb",
                                                               "ip_per_hour"))
    lines = [
        Line("GPUs", f"{n_gpus} x {gpu_type} ({kind}) x {w} x ${gpu_h:.4f}",
             n_gpus * gpu_h * worker_hours),
        Line("VMs", f"{nodes} x {machine} ({kind}) x {w} x ${vm_h:.4f}",
             nodes * vm_h * worker_hours),
        Line("head", f"1 x {head_machine_type} (on-demand) x {hh} x ${head_h:.4f}",
             head_h * head_hours),
        Line("disks", f"{nodes} x {w} + 1 x {hh} of {disk_gb} GB {DISK_TYPE} "
                      f"(${disk_m:.3f}/GB-month)",
             (nodes * worker_hours + head_hours) * disk_gb * disk_m / HOURS_PER_MONTH),
        Line("IPs", f"external IPs: {' + '.join(who) or 'none'} (${ip_head:.4f}/h"
                    + (f", on spot VMs ${ip_worker:.4f}/h)" if worker_external_ip and spot
                       else ")"),
             (ip_head * head_hours if head_external_ip else 0.0)
             + (nodes * ip_worker * worker_hours if worker_external_ip else 0.0)),
    ]
    if nat_users:
        lines.append(Line(
            "NAT", f"{nodes} worker(s) x {w} x ${nat_vm:.4f} + {nat_gb_per_worker:g} GB each x "
                   f"${nat_gb:.3f} + its IP {hh}",
            nodes * nat_vm * worker_hours + nodes * nat_gb_per_worker * nat_gb
            + nat_ip * head_hours))
    lines.append(Line("bucket", f"{storage_gb:g} GB for 1 month (${bucket_m:.3f}/GB-month)",
                      storage_gb * bucket_m))
    title = (f"Estimated cost: {n_gpus} x {gpu_type} {kind} on {nodes} node(s) for {hours:g} h "
             f"({prices.region} prices):")
    notes = [f"each worker is billed {w}: {boot_minutes:g} min boot (driver, install or image "
             f"pull) + {hours:g} h run + {idle_minutes:g} min idle timeout; the head {hh} (run + "
             f"{head_overhead_hours:g} h to start it and to `cloud down`)"]
    for note in (prices.region_note(region), prices.note(gpu_type)):
        if note:
            notes.append(note)
    return Estimate(title, tuple(lines), prices.date, tuple(notes))


def estimate_shape(shape: Shape, hours: float, prices: Prices | None = None, *,
                   boot_minutes: float = BOOT_MINUTES,
                   head_overhead_hours: float = HEAD_OVERHEAD_HOURS) -> Estimate:
    """`estimate` for a checked cluster YAML at full size (`validate.shape`)."""
    return estimate(shape.max_workers * shape.gpus_per_worker, shape.gpu_type, hours,
                    shape.spot, gpus_per_node=shape.gpus_per_worker,
                    machine_type=shape.worker_machine, head_machine_type=shape.head_machine,
                    disk_gb=shape.disk_gb, prices=prices, region=shape.region,
                    boot_minutes=boot_minutes, idle_minutes=shape.idle_timeout_minutes,
                    head_overhead_hours=head_overhead_hours,
                    # An image comes from Artifact Registry through Private Google Access
                    # (free); the wheel's dependencies come from PyPI through the NAT.
                    nat_gb_per_worker=NAT_GB_PER_WORKER if shape.wheel else 0.0,
                    worker_external_ip=shape.worker_external_ip,
                    head_external_ip=shape.head_external_ip)
