"""The commands behind `autolfads cloud up|submit|status|download|down`.

Each `*_commands` function is pure: it returns the exact argv lists (as `Cmd`) that the
subcommand runs, so tests and `--dry-run` show them without credentials or network. `execute`
is the only place that starts a process.

How the job server is reached: by default every `ray job` command runs on the head node through
`ray exec CFG` (SSH, the same route as `ray attach`), where the job server listens on
127.0.0.1:8265; nothing else has to stay open. With `--address http://127.0.0.1:8265` the
commands run here instead, through a tunnel the user keeps open with `ray dashboard CFG`.
`ray job submit --no-wait` returns at once and the run goes on when the laptop disconnects.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autolfads import storage
from autolfads.errors import UserInputError

HEAD_JOB_SERVER = "http://127.0.0.1:8265"  # the job server as seen from the head itself
AUTH_ENV = ("RAY_AUTH_MODE", "token")  # keep token auth on for every job-server call
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
INSTALL_HINTS = {
    "ray": "install Ray's CLI in this environment: pip install 'ray[default]==2.60.0' "
           "google-api-python-client (the same Ray version as the image)",
    "gcloud": "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), then "
              "run `gcloud auth login` and `gcloud auth application-default login`",
}
# `ray` subcommands that talk to GCP through Ray's launcher (needs google-api-python-client).
LAUNCHER_SUBCOMMANDS = {"up", "down", "exec", "attach", "dashboard"}


@dataclass(frozen=True)
class Cmd:
    """One command: its argv, extra environment, and whether its stdout must stay hidden."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    hide_stdout: bool = False  # `ray get-auth-token` prints the secret token

    def __str__(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return f"{prefix} {shlex.join(self.argv)}".strip()


def job_id(name: str) -> str:
    return f"autolfads-{name}"


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise UserInputError(
            f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 63), starting with "
            "a letter or digit")
    return name


def run_uri(bucket: str, name: str) -> str:
    """Where a run's outputs live in the bucket."""
    return f"{bucket.rstrip('/')}/runs/{name}"


def _job(cfg: Path, argv: Sequence[str], address: str | None) -> Cmd:
    """A `ray job ...` command, run on the head (default) or here through a tunnel."""
    if address is None:
        remote = ["env", "=".join(AUTH_ENV), *argv[:3], "--address", HEAD_JOB_SERVER, *argv[3:]]
        return Cmd(("ray", "exec", str(cfg), shlex.join(remote)))
    return Cmd((*argv[:3], "--address", address, *argv[3:]), env=(AUTH_ENV,))


def up_commands(cfg: Path) -> list[Cmd]:
    # The token every node gets as a file mount (see cluster.TOKEN_MOUNT); made once, kept.
    return [Cmd(("ray", "get-auth-token", "--generate"), hide_stdout=True),
            Cmd(("ray", "up", "-y", str(cfg)))]


def submit_commands(cfg: Path, bucket: str, name: str, data: str | None,
                    run_args: Sequence[str] = (), *, workers_per_gpu: int = 1,
                    address: str | None = None, working_dir: str | None = None) -> list[Cmd]:
    """Upload local data to the bucket (if needed) and start `autolfads run` as a Ray job."""
    check_name(name)
    if working_dir and address is None:
        raise UserInputError(
            "--working-dir: needs --address (a tunnel opened with `ray dashboard CFG`); through "
            "`ray exec` the directory would have to exist on the head node")
    for arg in run_args:
        if arg.split("=", 1)[0] in ("--out", "--address", "--workers-per-gpu"):
            raise UserInputError(
                f"{arg}: set by `cloud submit` (outputs go to BUCKET/runs/NAME, the job joins "
                "its cluster); use --name, --bucket or --workers-per-gpu instead")
    cmds: list[Cmd] = []
    entry = ["autolfads", "run"]
    if data:
        if not storage.is_uri(data):
            if not Path(data).is_file():
                raise UserInputError(f"DATA {data}: file not found")
            uri = f"{bucket.rstrip('/')}/data/{name}/{Path(data).name}"
            cmds.append(Cmd(("gcloud", "storage", "cp", data, uri)))
            data = uri
        entry.append(data)
    # --address auto: join the cluster the job runs in (without it `autolfads run` starts a
    # private local Ray on the head). GPUs are used only when --workers-per-gpu is set.
    entry += ["--out", run_uri(bucket, name), "--address", "auto",
              "--workers-per-gpu", str(workers_per_gpu), *run_args]
    submit = ["ray", "job", "submit", "--submission-id", job_id(name), "--no-wait"]
    if working_dir:
        submit += ["--working-dir", working_dir]
    cmds.append(_job(cfg, [*submit, "--", *entry], address))
    return cmds


def status_commands(cfg: Path, name: str | None = None, *, logs: bool = False,
                    follow: bool = False, address: str | None = None) -> list[Cmd]:
    if name is None:
        return [_job(cfg, ["ray", "job", "list"], address)]
    check_name(name)
    cmds = [_job(cfg, ["ray", "job", "status", job_id(name)], address)]
    if logs or follow:
        flags = ["--follow"] if follow else []
        cmds.append(_job(cfg, ["ray", "job", "logs", *flags, job_id(name)], address))
    return cmds


def download_commands(bucket: str, name: str, dest: Path) -> list[Cmd]:
    # Into dest/NAME (dest must exist: `cp -r` into a missing folder would rename the run).
    return [Cmd(("gcloud", "storage", "cp", "-r", run_uri(bucket, check_name(name)),
                 str(dest)))]


def down_commands(cfg: Path) -> list[Cmd]:
    return [Cmd(("ray", "down", "-y", str(cfg)))]


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
        path = _executable(exe)
        if path is None:
            raise UserInputError(f"`{exe}` not found: {INSTALL_HINTS.get(exe, 'install it')}")
        paths[exe] = path
        if (exe == "ray" and cmd.argv[1] in LAUNCHER_SUBCOMMANDS
                and not _google_client_installed()):
            raise UserInputError(
                "Ray's GCP launcher needs google-api-python-client: pip install "
                "google-api-python-client (and `gcloud auth application-default login`)")
    return paths


def execute(cmds: Sequence[Cmd], dry_run: bool = False, echo=print) -> None:
    """Print the commands (dry run) or run them in order, stopping at the first failure."""
    if dry_run:
        for cmd in cmds:
            echo(str(cmd))
        return
    paths = preflight(cmds)
    for cmd in cmds:
        env = {**os.environ, **dict(cmd.env)}
        argv = [paths[cmd.argv[0]], *cmd.argv[1:]]
        out = subprocess.DEVNULL if cmd.hide_stdout else None
        rc = subprocess.run(argv, env=env, stdout=out, check=False).returncode
        if rc != 0:
            shown = " ".join(cmd.argv[:3])
            raise UserInputError(f"`{shown}` failed with exit status {rc}; see its output above")
