"""Cost estimate of a cluster run from the dated price table shipped in `prices.yaml`.

GPU + worker VMs + head node (always on demand: a preempted head would stop the whole run) for
the run's hours, boot disks for the same hours, and the bucket for a month (outputs outlive the
cluster). Network egress, taxes and discounts are left out and the output says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from autolfads.cloud import gcp
from autolfads.errors import UserInputError

HOURS_PER_MONTH = 730.0  # GCP's billing month
DISK_TYPE = "pd-balanced"  # what `cloud init` configures
_MAPS = ("gpu_per_hour", "vm_per_hour", "disk_per_gb_month")


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
        return self._hourly("gpu_per_hour", name, spot, "--gpu-type")

    def vm(self, name: str, spot: bool, what: str = "machine type") -> float:
        return self._hourly("vm_per_hour", name, spot, what)

    def note(self, gpu: str) -> str:
        return str(self.table["gpu_per_hour"].get(gpu, {}).get("note", ""))


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
        for section in _MAPS:
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
             storage_gb: float = 10.0, prices: Prices | None = None) -> Estimate:
    """Estimate a run on `gpus` GPUs of `gpu_type` for `hours` (whole cluster busy throughout)."""
    if gpus < 1:
        raise UserInputError(f"--gpus {gpus}: must be at least 1")
    if not hours > 0:
        raise UserInputError(f"--hours {hours}: must be more than 0")
    if gpus_per_node < 1:
        raise UserInputError(f"--gpus-per-node {gpus_per_node}: must be at least 1")
    if storage_gb < 0 or disk_gb < 0:
        raise UserInputError("--storage-gb and --disk-gb: must not be negative")
    prices = prices or load_prices()
    nodes = math.ceil(gpus / gpus_per_node)
    machine = machine_type or gcp.default_worker_machine(gpu_type, gpus_per_node)
    kind = "spot" if spot else "on-demand"
    gpu_h, vm_h = prices.gpu(gpu_type, spot), prices.vm(machine, spot, "--machine-type")
    head_h = prices.vm(head_machine_type, False, "--head-machine-type")
    disk_m = float(prices.table["disk_per_gb_month"][DISK_TYPE])
    bucket_m = float(prices.table["bucket_per_gb_month"])
    n_gpus = nodes * gpus_per_node
    lines = (
        Line("GPUs", f"{n_gpus} x {gpu_type} ({kind}) x {hours:g} h x ${gpu_h:.4f}",
             n_gpus * gpu_h * hours),
        Line("VMs", f"{nodes} x {machine} ({kind}) x {hours:g} h x ${vm_h:.4f}",
             nodes * vm_h * hours),
        Line("head", f"1 x {head_machine_type} (on-demand) x {hours:g} h x ${head_h:.4f}",
             head_h * hours),
        Line("disks", f"{nodes + 1} x {disk_gb} GB {DISK_TYPE} x {hours:g} h "
                      f"(${disk_m:.3f}/GB-month)",
             (nodes + 1) * disk_gb * disk_m * hours / HOURS_PER_MONTH),
        Line("bucket", f"{storage_gb:g} GB for 1 month (${bucket_m:.3f}/GB-month)",
             storage_gb * bucket_m),
    )
    title = (f"Estimated cost: {n_gpus} x {gpu_type} {kind} on {nodes} node(s) for {hours:g} h "
             f"({prices.table.get('region', 'us-central1')}):")
    note = prices.note(gpu_type)
    return Estimate(title, lines, prices.date, (note,) if note else ())
