"""What the driver does when a worker fails: log it, back off, or end the run.

Failure budget: Ray restarts a failed worker from its last checkpoint (the end of its last
generation) up to `pbt.max_failures` times (20 by default, sized for spot VMs; -1: no limit).

Back-off: so that a worker whose nodes keep failing does not spin, its n-th failure in a row
(failures since it last finished a generation) makes it wait `restart_delay(n)` = min(60, 2**n)
seconds (2, 4, 8, 16, 32, 60, 60, ...) before it trains again. Ray starts a requeued trial at
once, so the wait cannot live on the driver without blocking every other worker: the driver
writes the time the worker may start into the trial's config (`member.not_before`), and the
worker sleeps until then (trainable.py). The next start, a generation later, finds that time
past and does not wait.

A worker that was given a GPU and sees none (trainable.GPUMissing) fails the same way on every
restart, so it ends the run at once through the stopper (`abort`) with the worker's own message.
So does a worker that fails on its settings (pydantic's ValidationError: a hyperparameter out
of its range), and one that runs out of GPU memory twice in a row (workers sharing a GPU each
hold their data and activations there): restarts would only repeat it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from ray.tune import Callback

from autolfads.pbt.trainable import MAX_RESTART_DELAY_S, GPUMissing

_GPU_MISSING = re.compile(rf"{GPUMissing.__name__}: (.+)$")
# An exception's own line in a traceback: "module.Name: message" ("Name(Cause): ..." from Ray)
_EXCEPTION = re.compile(r"^([\w.]+(?:Error|Exception))(?:\([\w.]+\))?: ")
# torch's OutOfMemoryError (CUDA's allocator; "HIP" on ROCm), not Ray's of the same name, which
# its memory monitor raises when the node runs low on host memory
_GPU_OOM = re.compile(r"\btorch\.(cuda\.)?OutOfMemoryError\b|\b(CUDA|HIP) out of memory")
_HOST_OOM = re.compile(r"\bray\.exceptions\.OutOfMemoryError\b|running low on memory")
OOM_FIX = ("out of GPU memory: lower --workers-per-gpu (workers sharing a GPU each hold their "
           "data and activations there), or train.batch_size")
HOST_OOM_FIX = ("killed by Ray: its node ran low on memory; fewer workers per node (a higher "
                "--cpus-per-worker) or a smaller train.batch_size")


def restart_delay(streak: int) -> float:
    """Seconds a worker waits before training again after its `streak`-th failure in a row."""
    if streak <= 0:
        return 0.0
    return float(min(MAX_RESTART_DELAY_S, 2 ** min(streak, 16)))


def gpu_missing(error_text: str) -> str | None:
    """The worker's GPUMissing message in Ray's error text (the traceback of the remote call),
    or None when the failure was something else."""
    for line in reversed(error_text.splitlines()):
        m = _GPU_MISSING.search(line.strip())
        if m:
            return m.group(1)
    return None


def config_error(error_text: str) -> str | None:
    """What is wrong when the worker's last exception is pydantic's ValidationError: a setting
    it cannot train with (a hyperparameter out of its range), which every restart would meet
    again. None for anything else (a full disk, a lost node: restarts may help)."""
    lines = [ln.strip() for ln in error_text.splitlines()]
    for i in range(len(lines) - 1, -1, -1):
        m = _EXCEPTION.match(lines[i])
        if m is None:
            continue
        if not m[1].endswith("ValidationError"):
            return None
        field, what = (lines[i + 1:i + 3] + ["", ""])[:2]  # its field, then what is wrong
        return f"{field}: {what.split(' [type=')[0]}".strip(": ")
    return None


def first_line(error_text: str) -> str:
    """The exception line of a Ray error text (its last non-empty line, pydantic's link left
    out)."""
    lines = [ln.strip() for ln in error_text.splitlines()
             if ln.strip() and not ln.strip().startswith("For further information visit")]
    return lines[-1][:200] if lines else "no error details"


def _read(error_file: str | None) -> str:
    try:
        return Path(error_file or "").read_text()
    except OSError:
        return ""


class WorkerFailures(Callback):
    """Counts each worker's failures, says them on the terminal and in pbt/events.log, sets the
    restarted worker's back-off, and aborts the run when a restart cannot help."""

    def __init__(self, log: Callable[[str], object], event: Callable[[str], object],
                 abort: Callable[[str], object], max_failures: int,
                 clock: Callable[[], float] = time.time):
        self.log, self.event, self.abort = log, event, abort
        self.max_failures = max_failures
        self.clock = clock
        self.failures: dict[int, int] = {}  # worker -> failures in this session
        self.streak: dict[int, int] = {}  # worker -> failures since its last finished generation
        self.oom: dict[int, int] = {}  # worker -> its GPU out-of-memory failures in a row

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.streak[_worker(trial)] = self.oom[_worker(trial)] = 0

    def on_trial_recover(self, iteration, trials, trial, **info):
        w, text = self._count(trial)
        if self._fatal(w, text):
            return
        delay = restart_delay(self.streak[w])
        member = dict(trial.config["member"], not_before=self.clock() + delay)
        trial.set_config({**trial.config, "member": member})
        why = (OOM_FIX if self.oom[w] else HOST_OOM_FIX if _HOST_OOM.search(text)
               else first_line(text))
        self._say(f"worker {w} failed ({self._tally(w)}): {why}; restarting it "
                  f"from its last checkpoint in {delay:g} s")

    def on_trial_error(self, iteration, trials, trial, **info):
        w, text = self._count(trial)
        if self._fatal(w, text):
            return
        self._say(f"worker {w} failed for good ({self._tally(w)}): {first_line(text)}; the "
                  "run goes on without it")

    def _count(self, trial) -> tuple[int, str]:
        w = _worker(trial)
        text = _read(trial.error_file)
        self.failures[w] = self.failures.get(w, 0) + 1
        self.streak[w] = self.streak.get(w, 0) + 1
        self.oom[w] = self.oom.get(w, 0) + 1 if _GPU_OOM.search(text) else 0
        return w, text

    def _fatal(self, worker: int, text: str) -> bool:
        reason = gpu_missing(text)
        if reason is None and self.oom[worker] >= 2:
            reason = f"worker {worker} ran {OOM_FIX} (it failed so twice in a row)"
        if reason is None and (setting := config_error(text)):
            reason = f"worker {worker} cannot train with its settings: {setting}"
        if reason is None:
            return False
        self.event(f"worker {worker} failed: {reason}; stopping the run")
        self.abort(reason)
        return True

    def _tally(self, worker: int) -> str:
        budget = "unlimited" if self.max_failures < 0 else str(self.max_failures)
        return (f"failure {self.failures[worker]} of this worker, {self.streak[worker]} in a "
                f"row; pbt.max_failures {budget}")

    def _say(self, message: str) -> None:
        self.log(message)
        self.event(message)


def _worker(trial) -> int:
    return int(trial.config["member"]["worker"])


class StartWatch(Callback):
    """Says, once, when no worker has started `after_s` seconds into the run: Ray waits for
    resources in silence (its warnings are muted, session.py), and on a cluster whose GPU nodes
    never join that wait has no end. Once one worker runs, the others waiting is the normal
    queue of a population larger than the machines."""

    def __init__(self, log: Callable[[str], object], ask: dict[str, float],
                 after_s: float = 180.0, clock: Callable[[], float] = time.monotonic,
                 free: Callable[[], dict] | None = None):
        self.log, self.ask, self.after_s, self.clock = log, ask, after_s, clock
        self.free = free or _available_resources
        self.t0: float | None = None
        self.done = False

    def on_step_begin(self, iteration, trials, **info):
        if self.done:
            return
        now = self.clock()
        self.t0 = now if self.t0 is None else self.t0
        if any(t.status != "PENDING" for t in trials):
            self.done = True
        elif now - self.t0 >= self.after_s:
            self.done = True
            have = self.free()
            ask = ", ".join(f"{v:.3g} {k.upper()}" for k, v in self.ask.items())
            self.log(f"no worker has started after {now - self.t0:.0f} s: each asks for {ask}, "
                     f"and Ray has {have.get('CPU', 0):g} CPU and {have.get('GPU', 0):g} GPU "
                     "free. Still waiting: a cluster may be adding nodes (`autolfads cloud "
                     "status`, or `ray status` on the head, says which cannot be placed); "
                     "Ctrl-C stops, --resume continues")


def _available_resources() -> dict:
    import ray

    return ray.available_resources()
