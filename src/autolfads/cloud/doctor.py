"""`autolfads cloud doctor [CFG]`: every prerequisite of `cloud up` that is missing, with its fix.

A first-time Google Cloud user otherwise meets the missing pieces one at a time, minutes into
`ray up` (no login, billing off, an API off, GPU quota 0, no bucket, a retired image). Doctor asks
gcloud about all of them and prints one line each: `ok   ...`, `FAIL what -> fix`, `warn ...`, or
`skip ...` (cannot be checked until a line above is fixed). What `cloud up` creates itself
(gcp_setup.py: the firewall rule between the nodes) is a warning when missing, not a problem.

Same shape as `lifecycle`: `checks` is pure (the exact `Cmd`s of each check, and its parser from
doctor_checks.py), and `run_checks` runs them through an injectable
`run(cmd) -> (rc, stdout, stderr)`. A failed gcloud command is a finding, never a traceback. This
machine's side (versions, ssh for a lab's own hosts) is checked here.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import typer

from autolfads import __version__
from autolfads.cloud import lifecycle
from autolfads.cloud.cluster import load_config
from autolfads.cloud.doctor_checks import (
    IMAGE_RE,
    PROBE,
    Facts,
    Finding,
    Result,
    facts,
    fail,
    ok,
    parse_accelerators,
    parse_adc,
    parse_apis,
    parse_billing,
    parse_bucket,
    parse_firewall,
    parse_gcloud,
    parse_image,
    parse_login,
    parse_project,
    parse_quota,
    skip,
    warn,
)
from autolfads.cloud.lifecycle import Cmd
from autolfads.errors import UserInputError

Runner = Callable[[Cmd], Result]

RAY_PIN = "2.60.0"  # pyproject's pin, for when the package metadata cannot be read
TIMEOUT_S = 120


@dataclass(frozen=True)
class Check:
    cmds: tuple[Cmd, ...]
    parse: Callable[[list[Result]], list[Finding]]
    gate: bool = False  # an error here stops the run: every later check would fail the same way


@dataclass(frozen=True)
class Local:
    """This machine's side: what `ray up` and `ray job` run with here."""

    ray: str | None
    ray_pin: str
    autolfads: str
    google_client: bool
    checkout: bool = True  # this autolfads runs from a source checkout (a wheel can be built)


def local_versions() -> Local:
    def dist(name: str, read: Callable[[str], Any]) -> Any:
        try:
            return read(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    pins = [m[1] for r in dist("autolfads", importlib.metadata.requires) or []
            if (m := re.match(r"ray(?:\[[^\]]*\])?==([\w.]+)", r.replace(" ", "")))]
    return Local(dist("ray", importlib.metadata.version), pins[0] if pins else RAY_PIN,
                 __version__, lifecycle._google_client_installed(),
                 lifecycle.project_root() is not None)


def parse_versions(f: Facts, here: Local) -> list[Finding]:
    out = []
    if here.ray != here.ray_pin:
        out.append(fail(f"ray {here.ray or 'not installed'} here; the cluster runs ray "
                        f"{here.ray_pin}", f"pip install 'ray[default]=={here.ray_pin}'"))
    if f.provider == "gcp" and not here.google_client:
        out.append(fail("google-api-python-client not installed (Ray's GCP launcher needs it)",
                        "pip install google-api-python-client"))
    if f.wheel and not here.checkout:
        out.append(fail("the nodes install autolfads from a wheel of this source checkout, and "
                        "this installation has none", "pip install -e PATH_TO_A_CHECKOUT here, "
                        "or write the YAML again with `autolfads cloud init ... --image IMAGE "
                        "--force`"))
    if f.version and f.version != here.autolfads and f.wheel:
        out.append(warn(f"autolfads {here.autolfads} here; the YAML was written by "
                        f"{f.version}", "write it again with `autolfads cloud init ... --force` "
                        f"(`cloud up` installs this checkout's {here.autolfads} on the nodes)"))
    elif f.version and f.version != here.autolfads:  # an image, or a Python on the hosts
        out.append(warn(f"autolfads {here.autolfads} here; the YAML's nodes run {f.version}",
                        f"pip install autolfads=={f.version}, or install {here.autolfads} on "
                        "the nodes (push its image) and write the YAML again with `autolfads "
                        "cloud init ... --force`"))
    return out or [ok(f"versions: ray {here.ray}, autolfads {here.autolfads}, as on the nodes")]


def parse_local(f: Facts) -> list[Finding]:
    out = [ok(f"{exe}: installed") if shutil.which(exe) else fail(
        f"{exe}: not installed here", f"sudo apt-get install {pkg} (or your system's package)")
        for exe, pkg in (("ssh", "openssh-client"), ("rsync", "rsync"))]
    key = Path(os.path.expanduser(f.ssh_key or "~/.ssh/id_rsa"))  # Ray's default for local
    name = f.ssh_key or str(key)
    if not key.is_file():
        return [*out, fail(f"ssh key {name}: not found", f"ssh-keygen -t ed25519 -f {name}, "
                           f"then ssh-copy-id -i {name} USER@HOST for each host")]
    if key.stat().st_mode & 0o077:
        return [*out, fail(f"ssh key {name}: readable by others (ssh refuses it)",
                           f"chmod 600 {name}")]
    return [*out, ok(f"ssh key {name}: private")]


def checks(f: Facts, probe: Path) -> list[Check]:
    """The checks in order, each with the exact commands it runs (pure)."""
    def gc(parse: Callable[[list[Result]], list[Finding]], *cmds: tuple[str, ...],
           gate: bool = False, hide: bool = False) -> Check:
        return Check(tuple(Cmd(("gcloud", *c), hide_stdout=hide) for c in cmds), parse, gate)

    versions = Check((), lambda _: parse_versions(f, local_versions()))
    if f.provider == "local":
        return [Check((), lambda _: parse_local(f)), versions]
    p, j, bucket = ("--project", f.project), "--format=json", f.bucket
    out = [gc(parse_gcloud, ("version", j), gate=True),
           gc(parse_login, ("auth", "list", j), gate=True),
           gc(parse_adc, ("auth", "application-default", "print-access-token"), hide=True),
           gc(partial(parse_project, f), ("projects", "describe", f.project, j), gate=True),
           gc(partial(parse_billing, f), ("billing", "projects", "describe", f.project, j)),
           gc(partial(parse_apis, f), ("services", "list", "--enabled", *p, j)),
           gc(partial(parse_quota, f), ("compute", "regions", "describe", f.region, *p, j),
              ("compute", "project-info", "describe", *p, j))]
    if f.shape is not None and f.shape.gpu_type:
        out.append(gc(partial(parse_accelerators, f), (
            "compute", "accelerator-types", "list", f"--filter=zone:{f.shape.zone}", *p, j)))
    if bucket:
        out.append(gc(partial(parse_bucket, f, bucket), ("storage", "buckets", "describe",
                                                          bucket, j),
                      ("storage", "cp", str(probe), f"{bucket}/{PROBE}"),
                      ("storage", "rm", f"{bucket}/{PROBE}")))
    else:
        out.append(Check((), lambda _: [fail("no bucket: the YAML sets no metadata.autolfads."
                                             "bucket", "autolfads cloud init --bucket gs://NAME "
                                             "... --force")]))
    for image in f.images:
        m = IMAGE_RE.search(image)
        verb = "describe-from-family" if m and m["fam"] else "describe"
        cmds = [("compute", "images", verb, m["name"], "--project", m["project"], j)] if m else []
        out.append(gc(partial(parse_image, f, image), *cmds))
    out.append(gc(partial(parse_firewall, f), ("compute", "firewall-rules", "list", *p, j)))
    return [*out, versions]


def run_cmd(cmd: Cmd) -> Result:
    """Run one command here and capture its output (a hidden stdout is not even read)."""
    try:
        exe = lifecycle.preflight([cmd])[cmd.argv[0]]
    except UserInputError as e:
        return 127, "", str(e)
    try:
        p = subprocess.run([exe, *cmd.argv[1:]], env={**os.environ, **dict(cmd.env)},
                           stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           stdout=subprocess.DEVNULL if cmd.hide_stdout else subprocess.PIPE,
                           timeout=TIMEOUT_S, check=False)
    except (subprocess.TimeoutExpired, OSError) as e:
        return 124, "", str(e)
    return p.returncode, p.stdout or "", p.stderr or ""


def run_checks(todo: Sequence[Check], run: Runner, echo: Callable[[str], Any]) -> list[Finding]:
    """Run each check's commands (stopping at its first failed one); print its lines as found."""
    findings: list[Finding] = []
    for check in todo:
        results: list[Result] = []
        for cmd in check.cmds:
            results.append(run(cmd))
            if results[-1][0] != 0:
                break
        found = check.parse(results)
        stop = check.gate and any(x.is_error for x in found)
        if stop:
            found.append(skip("the other checks: fix the line above first"))
        for x in found:
            echo(x.line())
        findings += found
        if stop:
            break
    return findings


def run_doctor(cfg_path: Path, echo: Callable[[str], Any] = typer.echo, run: Runner | None = None,
               *, dry_run: bool = False) -> list[Finding]:
    """Check what `cloud up CFG` needs; print a line per check; UserInputError if any fails."""
    f = facts(load_config(cfg_path), cfg_path.name)
    with tempfile.TemporaryDirectory(prefix="autolfads-doctor-") as tmp:
        probe = Path(tmp) / PROBE
        todo = checks(f, probe)
        if dry_run:
            for cmd in (c for check in todo for c in check.cmds):
                echo(str(cmd))
            return []
        probe.write_text("autolfads cloud doctor: a write test, safe to delete\n")
        findings = run_checks(todo, run or run_cmd, echo)
    if errors := sum(x.is_error for x in findings):
        raise UserInputError(f"cloud doctor: {errors} problem{'s' if errors > 1 else ''}; fix "
                             "them and run it again")
    warnings = sum(not x.ok and x.severity == "warning" for x in findings)
    echo("cloud doctor: ready" + (f" ({warnings} warning{'s' if warnings > 1 else ''})"
                                  if warnings else ""))
    return findings
