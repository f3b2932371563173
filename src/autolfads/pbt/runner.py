"""Start or resume an AutoLFADS run: Ray (local on 127.0.0.1, or a cluster), the population,
per-generation logs (rundir/pbt_log.py), and the best worker's checkpoint.

Run directory (DESIGN.md §3), besides the logs:
  pbt/checkpoints/        each worker's state at the end of the latest generation
  best_model/             checkpoint.pt + hparams.json of the best worker
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autolfads.config import Config
from autolfads.data.dataset import Dataset
from autolfads.errors import RunFailed, RunInterrupted, UserInputError
from autolfads.pbt.callbacks import WorkerFailures
from autolfads.pbt.resume import ResumePoint
from autolfads.pbt.scheduler import BinaryTournamentPBT, member_config
from autolfads.pbt.search_space import build_space, sample_initial
from autolfads.pbt.stopper import PBTStopper
from autolfads.pbt.trainable import lfads_worker
from autolfads.rundir import location
from autolfads.rundir.layout import join, worker_checkpoint
from autolfads.rundir.location import Location, get_bytes, put_bytes, put_json
from autolfads.rundir.pbt_log import RunLog
from autolfads.rundir.records import Decision, GenerationRecord


@dataclass
class PBTResult:
    out_dir: Path
    generations: int
    best: Decision
    best_checkpoint: Path
    stopped_reason: str | None
    wall_s: float


def run_pbt(
    dataset: Dataset,
    cfg: Config,
    store: Location,
    *,
    address: str | None = None,
    resume: ResumePoint | None = None,
    log: Callable[[str], None] = print,
    after_generation: Callable[[Path], None] | None = None,
) -> PBTResult:
    """`resume`: where an earlier run continues (`resume.resume_point`), None for a new run.
    `after_generation(local_run_dir)` runs once the generation's logs are written (the API
    refreshes the HTML report there); it is for people watching, so its failure is only logged."""
    from ray import tune

    p = cfg.pbt
    # Ray runs each worker in a directory of its own: a local run location must be absolute.
    run = store.location if store.remote else str(Path(store.location).resolve())
    out_dir = store.local
    space = build_space(p.search_space)
    names = list(space)
    runlog = RunLog(out_dir, run, names)
    stopper = PBTStopper(p.generations, p.stop_generations, p.stop_min_improvement)
    start_gen = 0
    if (point := resume) is not None:
        start_gen = point.generation
        if point.finished is not None:
            # Only the outputs are missing (interrupted while sampling the best worker).
            log(f"PBT finished at generation {start_gen} ({point.finished}); writing the "
                "outputs of its best worker")
            return _finished(store, run, start_gen, point.finished)
        runlog.truncate_after(start_gen)
        members = [member_config(m["worker"], m["hp"], m["checkpoint"]) for m in point.members]
        stopper.replay(point.bests)
        log(f"resuming from generation {start_gen}")
    else:
        rng = np.random.default_rng(p.seed)
        members = [member_config(w, hp) for w, hp in enumerate(sample_initial(space, p.population,
                                                                              rng))]
    t0 = time.perf_counter()

    def on_generation(record: GenerationRecord) -> None:
        runlog.append(record)
        runlog.write_population(record)
        _keep_best_model(out_dir, run, record)
        _prune_checkpoints(run, record.generation)
        if after_generation is not None:
            try:
                after_generation(out_dir)
            except Exception as e:  # noqa: BLE001  (must never stop the run)
                log(f"report not updated: {type(e).__name__}: {e}")
        store.sync()
        n_exp = sum(d.exploited for d in record.decisions)
        best = record.best()
        log(f"generation {record.generation:>3}/{p.generations}  best score {best.score:.5f} "
            f"(worker {best.worker})  exploits {n_exp}/{len(record.decisions)}  "
            f"elapsed {time.perf_counter() - t0:.0f}s")

    scheduler = BinaryTournamentPBT(space, stopper, seed=p.seed + start_gen,
                                    start_generation=start_gen, on_generation=on_generation)
    with ray_session(address):
        if address is None:
            _check_local_resources(p.cpus_per_worker, p.workers_per_gpu)
        resources = {"cpu": p.cpus_per_worker}
        if p.workers_per_gpu:
            resources["gpu"] = 1.0 / p.workers_per_gpu
        trainable = tune.with_resources(
            tune.with_parameters(lfads_worker, dataset=dataset,
                                 base=cfg.model_dump(mode="json"), run_dir=run),
            resources)
        tuner = tune.Tuner(
            trainable,
            param_space={"member": tune.grid_search([m["member"] for m in members])},
            tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"tune-from-gen{start_gen}",
                storage_path=join(run, "pbt", "tune"),
                stop=stopper,
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                # A lost node or a crashed worker: the trial restarts from its last checkpoint
                # (the end of its last generation) on whatever node has room (callbacks.py).
                failure_config=tune.FailureConfig(max_failures=p.max_failures),
                callbacks=[WorkerFailures(log, runlog.event, stopper.abort, p.max_failures)],
            ),
        )
        grid = tuner.fit()
    done = scheduler.history[-1].generation if scheduler.history else start_gen
    # Only a run with no completed generation may be started again with --force.
    again = (f"autolfads run --resume --out {store.location}" if done else
             f"autolfads run --force --out {store.location}")
    if stopper.aborted is not None:
        raise RunFailed(f"{stopper.aborted}; then {'continue' if done else 'start again'} "
                        f"with: {again}")
    if not scheduler.history:
        if grid.errors:
            raise RunFailed(f"AutoLFADS workers failed: {grid.errors[0]}")
        raise RunInterrupted(f"interrupted before generation {start_gen + 1} finished; "
                             f"{'continue' if done else 'start again'} with: {again}")
    last = scheduler.history[-1]
    if stopper.stopped_reason is None and last.generation < p.generations:
        raise RunInterrupted(f"interrupted after generation {last.generation}; continue with: "
                             f"autolfads run --resume --out {store.location}")
    best = last.best()
    return PBTResult(out_dir, last.generation, best,
                     out_dir / "best_model" / "checkpoint.pt",
                     stopper.stopped_reason, time.perf_counter() - t0)


def _finished(store: Location, run: str, generation: int, reason: str) -> PBTResult:
    """A run whose PBT ended but whose outputs were never written: the best worker of its last
    generation (best_worker.json is written before population.json) is the model to sample."""
    info = json.loads((store.local / "pbt" / "best_worker.json").read_text())
    best = Decision(int(info["worker"]), float(info["score"]), dict(info["hyperparameters"]))
    _keep_best_model(store.local, run, GenerationRecord(generation, [best]))
    store.sync()
    return PBTResult(store.local, generation, best, store.local / "best_model" / "checkpoint.pt",
                     reason, 0.0)


def _check_local_resources(cpus_per_worker: float, workers_per_gpu: int) -> None:
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


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when nothing listens at --address HOST:PORT (Ray itself would
    retry for minutes). "auto" and ray:// client addresses are left to Ray."""
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserInputError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.2:6379) "
                             "or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserInputError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}"
                             "); start one with `ray start --head` or check the address") from None


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
    if ray.is_initialized():
        yield
        return
    temp = None
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
    try:
        yield
    finally:
        ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _keep_best_model(out_dir: Path, run: str, record: GenerationRecord) -> None:
    best = record.best()
    dst = out_dir / "best_model"
    put_bytes(dst / "checkpoint.pt", get_bytes(worker_checkpoint(run, best.worker,
                                                                 record.generation)))
    put_json(dst / "hparams.json", {"worker": best.worker, "generation": record.generation,
                                        "score": best.score, "hyperparameters": best.hparams})


def _prune_checkpoints(run: str, generation: int) -> None:
    """Keep only the latest generation's worker checkpoints (what --resume needs), and the last
    two of Ray's copies per trial (Ray keeps all so that PBT can always find a source's)."""
    for path in location.glob(join(run, "pbt", "checkpoints", "w*", "gen*.pt")):
        if int(path.rsplit("gen", 1)[1][:3]) < generation:
            location.remove(path)
    trials: dict[str, list[str]] = {}
    for path in location.glob(join(run, "pbt", "tune", "*", "*", "checkpoint_*")):
        trials.setdefault(path.rsplit("/", 1)[0], []).append(path)
    for ckpts in trials.values():
        for old in sorted(ckpts)[:-2]:
            location.remove_tree(old)
