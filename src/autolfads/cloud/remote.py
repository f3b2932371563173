"""The cluster side of `cloud submit|status|stop`: run on the head (through `ray exec`), or here
against a job server tunnelled with `ray dashboard CFG`.

    python -m autolfads.cloud.remote submit NAME RUN [--resume] -- ENTRYPOINT...
    python -m autolfads.cloud.remote status [NAME] [--run RUN] [--follow]
    python -m autolfads.cloud.remote stop NAME

Every attempt at a run is its own Ray job, `autolfads-NAME-N` (Ray refuses a submission id it
has seen, so a fixed id would make a failed run impossible to re-run). Status shows three views
a user needs when a run seems stuck: the autoscaler's (nodes pending or failed, and why), the
job's state, and the run's latest generation from its storage.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from autolfads.cloud.failures import fix_for

JOB_SERVER = "http://127.0.0.1:8265"  # the job server as seen from the head itself
ACTIVE = ("PENDING", "RUNNING")
# Nothing placed for this long while a run waits for workers: say so plainly.
STUCK_AFTER_S = 60.0
POLL_S = 5.0
SSH_FAILURE = re.compile(r"waiting-for-ssh|ssh", re.I)  # an on-premise host the head cannot reach
SSH_FIX = ("the head cannot log in to that host over SSH: is it up, is the address right, does "
           "the key work (`ssh -i KEY USER@HOST`)?")


def job_prefix(name: str) -> str:
    return f"autolfads-{name}-"


def attempt_of(submission_id: str | None, name: str) -> int | None:
    """The attempt number of a job id of this run, or None for another run's job."""
    sid = submission_id or ""
    tail = sid[len(job_prefix(name)):]
    return int(tail) if sid.startswith(job_prefix(name)) and tail.isdigit() else None


@dataclass
class Attempt:
    number: int
    submission_id: str
    status: str
    message: str
    start_time: float | None  # seconds since the epoch


def attempts(jobs: list, name: str) -> list[Attempt]:
    """This run's attempts among Ray's job records, oldest first."""
    out = []
    for j in jobs:
        n = attempt_of(j.submission_id, name)
        if n is not None:
            start = j.start_time / 1000 if j.start_time else None
            out.append(Attempt(n, j.submission_id, str(getattr(j.status, "value", j.status)),
                               j.message or "", start))
    return sorted(out, key=lambda a: a.number)


class RemoteError(Exception):
    """One line for the user; exit status 2."""


def _client(address: str):
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def _run_exists(run: str) -> bool:
    from autolfads.rundir.layout import CONFIG, join
    from autolfads.rundir.location import exists

    return exists(join(run, CONFIG))


def submit(name: str, run: str, entrypoint: list[str], resume: bool, address: str) -> str:
    client = _client(address)
    tried = attempts(client.list_jobs(), name)
    live = [a for a in tried if a.status in ACTIVE]
    if live:
        raise RemoteError(f"run {name} is already going ({live[-1].submission_id} "
                          f"{live[-1].status}); follow it with `autolfads cloud status CFG "
                          f"{name} --follow` or stop it with `autolfads cloud stop CFG {name}`")
    exists = _run_exists(run)
    if resume and not exists:
        raise RemoteError(f"--resume {name}: no run at {run} to continue; submit it without "
                          "--resume")
    if not resume and exists and "--force" not in entrypoint:
        raise RemoteError(f"run {name} exists at {run}; continue it with `autolfads cloud "
                          f"submit CFG --resume {name}` or choose another --name")
    number = (tried[-1].number if tried else 0) + 1
    sid = client.submit_job(entrypoint=shlex.join(entrypoint),
                            submission_id=f"{job_prefix(name)}{number}")
    return f"submitted {sid} (attempt {number}); outputs: {run}"


def stop(name: str, address: str) -> str:
    client = _client(address)
    live = [a for a in attempts(client.list_jobs(), name) if a.status in ACTIVE]
    if not live:
        raise RemoteError(f"run {name}: no attempt is running, nothing to stop")
    for a in live:
        client.stop_job(a.submission_id)
    return (f"stopped {', '.join(a.submission_id for a in live)}; the run keeps its completed "
            f"generations: continue it with `autolfads cloud submit CFG --resume {name}`")


# --- the autoscaler's view ------------------------------------------------------------------

@dataclass
class NodeView:
    active: list[str]
    pending: list[str]
    failures: list[str]
    demands: list[str]  # resource requests nothing can serve yet (e.g. trials wanting a GPU)


SECTIONS = {"Active:": "active", "Idle:": None, "Pending:": "pending",
            "Recent failures:": "failures", "Pending Demands:": "demands"}


def parse_ray_status(text: str) -> NodeView:
    """The node and demand sections of `ray status` (Ray's `format_info_string` layout)."""
    found: dict[str, list[str]] = {"active": [], "pending": [], "failures": [], "demands": []}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line in SECTIONS:
            current = SECTIONS[line]
        elif line.endswith(":") or line.startswith(("---", "===")) or not line:
            current = None  # another section (Total Usage:, From request_resources:, ...)
        elif current and not line.startswith("(no "):
            found[current].append(line)
    return NodeView(**found)


def hint(line: str) -> str:
    """What to do about an autoscaler failure line (a Google Cloud error, or SSH)."""
    return fix_for(line) or (SSH_FIX if SSH_FAILURE.search(line) else "")


def _ray_status() -> str:
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.run([str(ray) if ray.is_file() else "ray", "status"],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout + proc.stderr


def _cluster_age_s() -> float | None:
    """How long Ray has been up on the head (its latest session folder's age)."""
    from ray._common.utils import get_default_ray_temp_dir

    try:
        return time.time() - os.lstat(Path(get_default_ray_temp_dir(), "session_latest")
                                      ).st_mtime
    except OSError:
        return None


def describe_nodes(view: NodeView, age_s: float | None) -> list[str]:
    n_active = sum(_count(a) for a in view.active)
    lines = [f"nodes: {n_active} active ({'; '.join(view.active) or 'none'}), "
             f"{len(view.pending)} pending, {len(view.failures)} recently failed"]
    for p in view.pending:
        h = hint(p)
        lines.append(f"  pending: {p}" + (f" -> {h}" if h else ""))
    for f in view.failures:
        h = hint(f)
        lines.append(f"  failed: {f}" + (f" -> {h}" if h else ""))
    for d in view.demands:
        lines.append(f"  waiting for resources: {d}" + (
            " -> no node has a GPU for these workers yet (GPU nodes starting, or failing to "
            "start: see below), or use --workers-per-gpu 0" if "GPU" in d else ""))
    # On GCP a node that cannot be created never shows as pending or failed in `ray status`:
    # the autoscaler's log is where the cloud's refusal is.
    errors = recent_launch_errors()
    for e in errors:
        lines.append(f"  autoscaler error: {e}" + (f" -> {hint(e)}" if hint(e) else ""))
    workers = n_active - 1  # the head is one of the active nodes
    if (view.pending or view.failures or errors) and workers <= 0 and age_s is not None \
            and age_s >= STUCK_AFTER_S:
        lines.append(f"  NOTHING PLACED: no worker node has joined in {age_s / 60:.0f} min "
                     "while the head runs (and bills); fix the cause above, or stop with "
                     "`autolfads cloud down CFG`")
    return lines


LAUNCH_ERROR = re.compile(r"quota|QUOTA|ZONE_RESOURCE_POOL_EXHAUSTED|does not have enough "
                          r"resources|Failed to launch|HttpError|PERMISSION_DENIED")


def recent_launch_errors(limit: int = 3) -> list[str]:
    """The cloud's own words for a node that could not be created (quota, stock-out), which
    `ray status` reduces to a category: the last few such lines of the autoscaler's log."""
    from ray._common.utils import get_default_ray_temp_dir

    logs = Path(get_default_ray_temp_dir(), "session_latest", "logs")
    lines: list[str] = []
    for name in ("monitor.err", "monitor.log"):
        try:
            text = (logs / name).read_text(errors="replace")[-200_000:]
        except OSError:
            continue
        lines += [_cloud_words(ln.strip())[:300] for ln in text.splitlines()
                  if LAUNCH_ERROR.search(ln) and not ln.lstrip().startswith("raise ")]
    return list(dict.fromkeys(lines))[-limit:]


RETURNED = re.compile(r'returned "([^"]+)"')


def _cloud_words(line: str) -> str:
    """Google's own message inside an HttpError line (`... returned "Quota 'X' exceeded..."`),
    which the traceback line buries after a long URL."""
    m = RETURNED.search(line)
    return m[1] if m else line


def _count(active_line: str) -> int:
    m = re.match(r"(\d+)\s", active_line)
    return int(m.group(1)) if m else 1


def run_progress(run: str) -> str:
    import json

    from autolfads.rundir.layout import BEST_WORKER, OUTPUT_H5, join
    from autolfads.rundir.location import exists, get_bytes

    try:
        best = json.loads(get_bytes(join(run, BEST_WORKER)))
    except (OSError, ValueError):
        return f"run: no generation finished yet ({run})"
    done = exists(join(run, OUTPUT_H5))
    return (f"run: generation {best['generation']} done, best score {best['score']:.5f} "
            f"(worker {best['worker']}){'; outputs written' if done else ''} ({run})")


def status(name: str | None, run: str | None, address: str, follow: bool) -> int:
    client = _client(address)
    for line in describe_nodes(parse_ray_status(_ray_status()), _cluster_age_s()):
        print(line, flush=True)
    if name is None:
        for j in client.list_jobs():
            print(f"job {j.submission_id}: {getattr(j.status, 'value', j.status)}")
        return 0
    tried = attempts(client.list_jobs(), name)
    if not tried:
        raise RemoteError(f"run {name}: never submitted to this cluster")
    last = tried[-1]
    print(f"job {last.submission_id} (attempt {last.number}): {last.status}"
          + (f": {last.message}" if last.message and last.status != "RUNNING" else ""))
    if run:
        print(run_progress(run), flush=True)
    if not follow:
        return 0 if last.status != "FAILED" else 1
    return _follow(client, name, last.submission_id, run)


def _follow(client, name: str, sid: str, run: str | None) -> int:
    """Print the job's new log lines and any change in the nodes until the job ends."""
    shown, nodes_before = 0, None
    while True:
        logs = client.get_job_logs(sid)
        if len(logs) > shown:
            print(logs[shown:], end="", flush=True)
            shown = len(logs)
        nodes = describe_nodes(parse_ray_status(_ray_status()), _cluster_age_s())
        if nodes != nodes_before and nodes_before is not None:
            print("\n".join(nodes), flush=True)
        nodes_before = nodes
        state = str(getattr(client.get_job_status(sid), "value", ""))
        if state not in ACTIVE:
            info = client.get_job_info(sid)
            print(f"job {sid}: {state}" + (f": {info.message}" if info.message else ""))
            if run:
                print(run_progress(run))
            return 0 if state == "SUCCEEDED" else 1
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m autolfads.cloud.remote")
    ap.add_argument("--address", default=JOB_SERVER)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("submit")
    s.add_argument("name")
    s.add_argument("run")
    s.add_argument("--resume", action="store_true")
    s.add_argument("entrypoint", nargs=argparse.REMAINDER)
    st = sub.add_parser("status")
    st.add_argument("name", nargs="?")
    st.add_argument("--run")
    st.add_argument("--follow", action="store_true")
    sp = sub.add_parser("stop")
    sp.add_argument("name")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "submit":
            entry = a.entrypoint[1:] if a.entrypoint[:1] == ["--"] else a.entrypoint
            print(submit(a.name, a.run, entry, a.resume, a.address))
        elif a.cmd == "stop":
            print(stop(a.name, a.address))
        else:
            return status(a.name, a.run, a.address, a.follow)
    except RemoteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
