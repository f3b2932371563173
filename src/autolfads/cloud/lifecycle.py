"""The commands behind `autolfads cloud up|submit|status|stop|download|down`.

Each `*_commands` function is pure: it returns the exact argv lists (as `Cmd`) that the
subcommand runs, so tests and `--dry-run` show them without credentials or network. `execute`
is the only place that starts a process.

How the cluster is reached: every job command runs on the head node through `ray exec CFG`
(SSH, the same route as `ray attach`) as `python -m autolfads.cloud.remote ...`, which talks to
the job server on the head's 127.0.0.1:8265; nothing else has to stay open, and a submitted run
goes on when the laptop disconnects. With `--address http://127.0.0.1:8265` the same helper runs
here instead, through a tunnel the user keeps open with `ray dashboard CFG`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autolfads.cloud import nodes
from autolfads.cloud.failures import diagnose
from autolfads.errors import UserInputError
from autolfads.rundir.layout import is_uri, join

AUTH_ENV = ("RAY_AUTH_MODE", "token")  # keep token auth on for every job-server call
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# LFADS steps are thousands of small kernels, so one worker leaves a GPU mostly idle (busy 8% of
# a step on an H200): there 3 workers sharing it trained 2.2-3.4x the trials/s of one, 8 workers
# 3.6-5.0x (three runs, 2026-11-30; bench/results.json). 3 is the tutorial's 2-3 per GPU, and
# fits GCP's 4 vCPUs per N1 GPU.
WORKERS_PER_GPU = 3
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR")
INSTALL_HINTS = {
    "ray": "install Ray's CLI in this environment: pip install 'autolfads[cluster]' (Ray "
           "2.60.0, the same version as the cluster)",
    "gcloud": "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), then "
              "run `gcloud auth login` and `gcloud auth application-default login`",
    "ssh": "install an SSH client (Debian/Ubuntu: apt-get install openssh-client rsync)",
}


@dataclass(frozen=True)
class Cmd:
    """One command: its argv, extra environment, and how its output is treated."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    hide_stdout: bool = False  # `ray get-auth-token` prints the secret token
    may_fail: bool = False  # best-effort clean-up (a worker host that is already gone)
    google: bool = False  # Ray's GCP launcher: needs google-api-python-client here
    quiet: bool = False  # hide the launcher's own log lines (what the helper prints matters)

    def __str__(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return f"{prefix} {shlex.join(self.argv)}".strip()


@dataclass(frozen=True)
class Cluster:
    """What the lifecycle needs from a cluster YAML."""

    path: Path
    kind: str  # "gcp" | "local"
    storage: str  # runs live in STORAGE/runs/NAME: a bucket, or a path every host sees
    node: nodes.NodePython
    wheel_dir: str | None = None  # `cloud up` builds the wheel the nodes install here
    worker_ips: tuple[str, ...] = ()
    ssh_user: str = ""
    ssh_key: str | None = None
    project: str = ""  # GCP: the project the VMs bill to
    name: str = ""  # cluster_name: Ray labels its GCP VMs ray-cluster-name=NAME
    # GCP clusters' workers always have GPUs; lab hosts say (`--gpus`); None: a lab cluster's
    # YAML from before it was written down
    gpus: bool | None = True

    @property
    def google(self) -> bool:
        return self.kind == "gcp"


def cluster_of(path: Path, cfg: dict[str, Any], storage_override: str | None = None,
               need_storage: bool = True) -> Cluster:
    """The cluster a YAML describes. `need_storage=False` (down): the run storage may be
    missing or broken in a YAML edited after `up`, and the VMs must still be deletable."""
    meta = (cfg.get("metadata") or {}).get("autolfads") or {}
    where = storage_override or meta.get("storage") or meta.get("bucket") or ""
    if not where and need_storage:
        raise UserInputError(f"{path.name}: no metadata.autolfads.storage (or bucket); pass "
                             "--bucket gs://NAME")
    python = meta.get("python")
    node = nodes.NodePython(python, install=bool(meta.get("wheel_dir"))) if python else \
        nodes.IMAGE_PYTHON
    prov = cfg.get("provider") or {}
    auth = cfg.get("auth") or {}
    return Cluster(path=path, kind=str(prov.get("type", "gcp")), storage=str(where).rstrip("/"),
                   node=node, wheel_dir=meta.get("wheel_dir"),
                   worker_ips=tuple(str(i) for i in prov.get("worker_ips") or ()),
                   ssh_user=str(auth.get("ssh_user", "")), ssh_key=auth.get("ssh_private_key"),
                   project=str(prov.get("project_id") or ""),
                   name=str(cfg.get("cluster_name") or "default"),  # Ray's default name
                   gpus=meta.get("gpus", True if prov.get("type", "gcp") == "gcp" else None))


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise UserInputError(
            f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 63), starting with "
            "a letter or digit")
    return name


def run_uri(where: str, name: str) -> str:
    """Where a run's outputs live in the cluster's storage."""
    return join(where, "runs", name)


def _ray(c: Cluster, *args: str, env: tuple[tuple[str, str], ...] = ()) -> Cmd:
    return Cmd(("ray", *args), env=env, google=c.google and args[0] in (
        "up", "down", "exec", "attach", "rsync-up", "rsync-down"))


def _remote(c: Cluster, args: Sequence[str], address: str | None) -> Cmd:
    """`python -m autolfads.cloud.remote ARGS` on the head (default) or here via a tunnel."""
    if address is None:
        argv = ["env", "=".join(AUTH_ENV), c.node.python, "-m", "autolfads.cloud.remote", *args]
        return replace(_ray(c, "exec", str(c.path), " ".join(map(nodes.sh, argv))), quiet=True)
    return Cmd((sys.executable, "-m", "autolfads.cloud.remote", "--address", address, *args),
               env=(AUTH_ENV,))


def wheel_commands(c: Cluster) -> list[Cmd]:
    """Build this checkout's wheel into the folder the YAML's file_mounts send to the nodes."""
    if not c.wheel_dir:
        return []
    root = project_root()
    if root is None:
        raise UserInputError(
            "cloud up: the nodes install autolfads from a wheel of its source checkout, and this "
            "installation has none; use an existing Python on the hosts (--python) or --image")
    return [Cmd((sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir",
                 c.wheel_dir, str(root)))]


def project_root() -> Path | None:
    """The source checkout this package runs from (src/ layout), if any."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def up_commands(c: Cluster, restart: bool = False) -> list[Cmd]:
    # The token every node gets as a file mount; made once, kept.
    up = ["up", "-y", str(c.path)]
    if not restart:
        # A second `up` (say, to change max_workers) must not restart Ray under a running job.
        up.insert(2, "--no-restart")
    env = (("RAY_UP_enable_autoscaler_v2", "0"),) if c.kind == "local" else ()
    return [*wheel_commands(c), Cmd(("ray", "get-auth-token", "--generate"), hide_stdout=True),
            _ray(c, *up, env=env)]


def run_command(c: Cluster, name: str, data: str | None, run_args: Sequence[str],
                workers_per_gpu: int | None, resume: bool) -> list[str]:
    """The `autolfads run` the job starts on the head."""
    for arg in run_args:
        if arg.split("=", 1)[0] in ("--out", "--address", "--workers-per-gpu", "--resume"):
            raise UserInputError(
                f"{arg}: set by `cloud submit` (outputs go to STORAGE/runs/NAME, the job joins "
                "its cluster); use --name, --resume or --workers-per-gpu instead")
    entry = [*c.node.autolfads(), "run"]
    if data:
        entry.append(data)
    # --address auto: join the cluster the job runs in (without it `autolfads run` starts a
    # private local Ray on the head). GPUs are used only when --workers-per-gpu is set.
    entry += ["--out", run_uri(c.storage, name), "--address", "auto"]
    if workers_per_gpu is not None:  # (None: a resumed run keeps its own)
        entry += ["--workers-per-gpu", str(workers_per_gpu)]
    if resume:
        entry.append("--resume")
    return [*entry, *run_args]


def upload_commands(c: Cluster, name: str, data: str) -> tuple[list[Cmd], str]:
    """Copy a local data file into the cluster's storage: (commands, where it lands)."""
    if is_uri(data):
        return [], data
    if not Path(data).is_file():
        raise UserInputError(f"DATA {data}: file not found")
    folder = join(c.storage, "data", name)
    dest = join(folder, Path(data).name)
    if c.storage.startswith("gs://"):
        return [Cmd(("gcloud", "storage", "cp", data, dest))], dest
    if is_uri(c.storage):
        raise UserInputError(f"DATA {data}: upload it to {c.storage} yourself and pass its URI")
    # A path on the hosts: rsync to the head (the driver, which alone reads the data).
    return [_ray(c, "exec", str(c.path), f"mkdir -p {nodes.sh(folder)}"),
            _ray(c, "rsync-up", str(c.path), str(Path(data).resolve()), dest)], dest


def submit_commands(c: Cluster, name: str, data: str | None, run_args: Sequence[str] = (), *,
                    workers_per_gpu: int | None = None, resume: bool = False,
                    address: str | None = None) -> list[Cmd]:
    """Upload local data (if any) and start `autolfads run` as a new attempt of run NAME.
    `workers_per_gpu` None: WORKERS_PER_GPU on a cluster with GPUs, CPU workers without, 1
    where the YAML does not say (the default before), and a resumed run's own."""
    check_name(name)
    if workers_per_gpu is None and not resume:
        workers_per_gpu = {True: WORKERS_PER_GPU, False: 0}.get(c.gpus, 1)
    if resume and data:
        raise UserInputError("DATA with --resume: a resumed run reads the data it started with")
    cmds: list[Cmd] = []
    if data:
        cmds, data = upload_commands(c, name, data)
    entry = run_command(c, name, data, run_args, workers_per_gpu, resume)
    args = ["submit", *(["--resume"] if resume else []), name, run_uri(c.storage, name),
            "--", *entry]
    return [*cmds, _remote(c, args, address)]


def status_commands(c: Cluster, name: str | None = None, *, follow: bool = False,
                    address: str | None = None) -> list[Cmd]:
    if name is None:
        return [_remote(c, ["status"], address)]
    args = ["status", check_name(name), "--run", run_uri(c.storage, name)]
    return [_remote(c, [*args, *(["--follow"] if follow else [])], address)]


def stop_commands(c: Cluster, name: str, address: str | None = None) -> list[Cmd]:
    return [_remote(c, ["stop", check_name(name)], address)]


def download_commands(c: Cluster, name: str, dest: Path) -> list[Cmd]:
    """Into dest/NAME (dest must exist: a copy into a missing folder would rename the run)."""
    src = run_uri(c.storage, check_name(name))
    if c.storage.startswith("gs://"):
        return [Cmd(("gcloud", "storage", "cp", "-r", src, str(dest)))]
    if is_uri(c.storage):
        raise UserInputError(f"download: copy {src} yourself (only gs:// and host paths are "
                             "handled here)")
    return [_ray(c, "rsync-down", str(c.path), src + "/", str(dest / name) + "/")]


def down_commands(c: Cluster) -> list[Cmd]:
    cmds = [_ray(c, "down", "-y", str(c.path))]
    # `ray down` stops only the head of an on-premise cluster; the workers' Ray would linger.
    for ip in c.worker_ips:
        key = ("-i", str(c.ssh_key)) if c.ssh_key else ()
        cmds.append(Cmd(("ssh", *key, *SSH_OPTIONS, f"{c.ssh_user}@{ip}",
                         f"{nodes.sh(c.node.ray)} stop --force"), may_fail=True))
    return cmds


def vms_left_command(c: Cluster) -> Cmd:
    """The cluster's VMs that still exist, in any state (a stopped one still bills its disk),
    one "NAME ZONE STATUS" line each."""
    return Cmd(("gcloud", "compute", "instances", "list", "--project", c.project,
                "--filter", f"labels.ray-cluster-name={c.name}",
                "--format", "value(name,zone.basename(),status)"))


def vms_left(stdout: str) -> list[tuple[str, str, str]]:
    """vms_left_command's output as (name, zone, status)."""
    return [(f[0], f[1], f[2] if len(f) > 2 else "") for f in
            (line.split() for line in stdout.splitlines()) if len(f) >= 2]


def delete_vms_commands(c: Cluster, vms: Sequence[tuple[str, str, str]]) -> list[Cmd]:
    """What deletes those VMs: one command per zone."""
    zones: dict[str, list[str]] = {}
    for name, zone, _ in vms:
        zones.setdefault(zone, []).append(name)
    return [Cmd(("gcloud", "compute", "instances", "delete", *names, "--zone", zone,
                 "--project", c.project, "--quiet")) for zone, names in zones.items()]


def _executable(name: str) -> str | None:
    # The `ray` installed next to this Python (the venv) counts even when it is not on PATH.
    found = shutil.which(name)
    sibling = Path(sys.executable).parent / name
    return found or (str(sibling) if sibling.is_file() else None)


def _google_client_installed() -> bool:
    return importlib.util.find_spec("googleapiclient") is not None


def preflight(cmds: Sequence[Cmd]) -> dict[str, str]:
    """Resolve every executable; UserInputError naming what to install when one is missing."""
    paths: dict[str, str] = {}
    for cmd in cmds:
        exe = cmd.argv[0]
        path = exe if os.path.isabs(exe) else _executable(exe)
        if path is None:
            raise UserInputError(f"`{exe}` not found: {INSTALL_HINTS.get(exe, 'install it')}")
        paths[exe] = path
        if cmd.google and not _google_client_installed():
            raise UserInputError(
                "Ray's GCP launcher needs google-api-python-client: pip install "
                "'autolfads[cluster]' (and `gcloud auth application-default login`)")
    return paths


def execute(cmds: Sequence[Cmd], dry_run: bool = False, echo=print) -> None:
    """Print the commands (dry run) or run them in order, stopping at the first failure.

    A line `error: ...` printed by our helper on the head becomes this command's one error
    line, rather than being followed by a second one about `ray exec`."""
    if dry_run:
        for cmd in cmds:
            echo(str(cmd))
        return
    paths = preflight(cmds)
    for cmd in cmds:
        env = {**os.environ, **dict(cmd.env)}
        argv = [paths[cmd.argv[0]], *cmd.argv[1:]]
        seen: deque[str] = deque(maxlen=SEEN_LINES)
        if cmd.hide_stdout:
            rc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False).returncode
            remote_error = None
        else:
            rc, remote_error = _run_relaying(argv, env, cmd.quiet, seen)
        if rc != 0 and not cmd.may_fail:
            if remote_error:
                raise UserInputError(remote_error)
            shown = " ".join(cmd.argv[:3])
            cause = diagnose(seen)  # the line that names it is rarely the last one
            raise UserInputError(f"`{shown}` failed: {cause}" if cause else
                                 f"`{shown}` failed with exit status {rc}; see its output above")


# The launcher's own chatter around a `ray exec` (its log records, SSH's notices).
LAUNCHER_NOISE = re.compile(
    r"^(\x1b\[[0-9;]*m)*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+V*(INFO|WARN)\b"
    r"|Warning: Permanently added|Shared connection to .* closed|Connection to .* closed"
    r"|Error: Command failed:|ssh -tt )")


SEEN_LINES = 400  # of a command's output, searched for the cause when it fails


def _run_relaying(argv: list[str], env: dict[str, str], quiet: bool = False,
                  seen: deque[str] | None = None) -> tuple[int, str | None]:
    """Run, passing output through line by line, holding back our helper's `error:` line;
    `seen` keeps the lines (for failures.diagnose)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1)
    error = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            text = line.strip()
            if seen is not None:
                seen.append(text)
            if text.startswith("error: "):
                error = text[len("error: "):]
            elif quiet and (LAUNCHER_NOISE.match(text) or not text.strip("\x1b[0m")):
                continue
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
    except KeyboardInterrupt:
        proc.terminate()
        raise
    return proc.wait(), error
