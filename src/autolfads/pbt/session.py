"""The Ray session an AutoLFADS run works in: a private local Ray bound to 127.0.0.1, or a
cluster at --address, with Ray's own output quieted in favour of our per-generation lines."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator

from autolfads.errors import UserInputError


def check_address(address: str | None, timeout: float = 5.0, what: str = "--address") -> None:
    """Fail fast, with one line, when nothing listens at --address HOST:PORT (Ray itself would
    retry for minutes). "auto" and ray:// client addresses are left to Ray. `what`: where the
    address was given (--address, cluster.address)."""
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserInputError(f"{what} {address}: expected HOST:PORT (e.g. 10.0.0.2:6379) "
                             "or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserInputError(f"{what} {address}: no Ray cluster answers there ({e.strerror or e}"
                             "); start one with `ray start --head` or check the address") from None


def _not_unfinished_trials(record: logging.LogRecord) -> bool:
    """An interrupted run's unfinished trials are logged at ERROR; our own line says what
    happened and how to resume."""
    return "Trials did not complete" not in record.getMessage()


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connect to `address`, or start a private local Ray bound to 127.0.0.1 (stopped and its
    temp files removed on exit). An already initialised Ray is used as it is."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our own logs suffice
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")
    # Our one line per generation replaces Ray's progress tables (the old reporter at verbose=0
    # prints nothing; the new one still prints its boxes).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Each failure is one line on the terminal and in pbt/events.log (callbacks.py); Ray's
    # tracebacks stay in the trial's error.txt. Results of trials stopped after a failure are
    # never fetched, which Ray would otherwise print as "Unhandled error" tracebacks.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    # Ray's own warnings (token auth notice, no result.json since our logs replace it, waiting
    # for resources at generation boundaries) are noise next to our per-generation lines.
    for name in ("ray", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    tune_log = logging.getLogger("ray.tune.tune")
    if _not_unfinished_trials not in tune_log.filters:
        tune_log.addFilter(_not_unfinished_trials)
    if ray.is_initialized():
        yield
        return
    temp = None
    # ray.init installs its own SIGTERM handler (it aborts the process); the CLI's (stop as
    # Ctrl-C does: cleanly, with the resume line) is put back after it.
    sigterm = signal.getsignal(signal.SIGTERM)
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        # With this variable Ray binds every port to 127.0.0.1 instead of the machine's address
        # (measured, see RAY_NOTES.md); it rules out multi-node, which a local run never needs.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        # The driver read that variable when Ray was imported (before this point, by our own
        # modules): without this it would still give the node the machine's address.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
        # Unix socket paths are limited to ~107 bytes, so Ray's temp dir goes under /tmp.
        temp = tempfile.mkdtemp(prefix="autolfads-ray-")
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, _temp_dir=temp,
                 object_store_memory=300 * 1024**2, logging_level=logging.ERROR,
                 log_to_driver=False)
    if callable(sigterm) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, sigterm)
    try:
        yield
    finally:
        ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def unused_gpus(workers_per_gpu: int, device: str) -> str | None:
    """A note when the machine (or cluster) has GPUs that the workers leave idle: they train on
    CPUs unless --workers-per-gpu gives them GPU shares. train.device=cpu says it is meant."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if workers_per_gpu or device == "cpu" or gpus < 1:
        return None
    return (f"note: Ray sees {gpus:g} GPU(s) that this run leaves idle (its workers train on "
            "CPUs); to train on them add --workers-per-gpu N (N workers share each GPU, e.g. 3)")


def check_local_resources(cpus_per_worker: float, workers_per_gpu: int) -> None:
    """On this machine a worker that can never be placed would make Ray wait forever in
    silence; a cluster may still be scaling up, so only local runs are checked."""
    import ray

    have = ray.cluster_resources()
    if workers_per_gpu and have.get("GPU", 0) < 1:
        raise UserInputError(f"--workers-per-gpu {workers_per_gpu}: this machine has no GPU that "
                             "Ray can see; use --workers-per-gpu 0 (CPU workers)")
    if have.get("CPU", 0) < cpus_per_worker:
        raise UserInputError(f"--cpus-per-worker {cpus_per_worker:g}: this machine has only "
                             f"{have.get('CPU', 0):g} CPU cores")
