"""Start or resume an AutoLFADS run: the population (population.py) trained by Ray Tune under the
binary-tournament scheduler (scheduler.py) in a Ray session (session.py), its logs written after
every generation (rundir/pbt_log.py), and how the run ended.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from autolfads.config import Config
from autolfads.data.dataset import Dataset
from autolfads.errors import RunFailed, RunInterrupted
from autolfads.pbt.callbacks import StartWatch, WorkerFailures
from autolfads.pbt.population import (
    PBTResult,
    finished_result,
    keep_best_model,
    prune_checkpoints,
    starting_members,
)
from autolfads.pbt.resume import ResumePoint
from autolfads.pbt.scheduler import BinaryTournamentPBT
from autolfads.pbt.search_space import build_space
from autolfads.pbt.session import check_address, check_local_resources, ray_session, unused_gpus
from autolfads.pbt.stopper import PBTStopper
from autolfads.pbt.trainable import lfads_worker
from autolfads.rundir import layout
from autolfads.rundir.layout import join
from autolfads.rundir.location import Location, put_json, remove
from autolfads.rundir.pbt_log import RunLog
from autolfads.rundir.records import GenerationRecord

__all__ = ["PBTResult", "check_address", "run_pbt"]


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
    p = cfg.pbt
    # Ray runs each worker in a directory of its own: a local run location must be absolute.
    run = store.location if store.remote else str(Path(store.location).resolve())
    out_dir = store.local
    space = build_space(p.search_space)
    names = list(space)
    runlog = RunLog(out_dir, run, names)
    stopper = PBTStopper(p.generations, p.stop_generations, p.stop_min_improvement)
    start_gen = 0
    (out_dir / layout.INTERRUPTED).unlink(missing_ok=True)  # going on again
    if store.remote and store.exists(layout.INTERRUPTED):
        remove(store.path(layout.INTERRUPTED))
    if (point := resume) is not None:
        start_gen = point.generation
        if point.finished is not None:
            # Only the outputs are missing (interrupted while sampling the best worker).
            log(f"PBT finished at generation {start_gen} ({point.finished}); writing the "
                "outputs of its best worker")
            return finished_result(store, run, start_gen, point.finished)
        runlog.truncate_after(start_gen)
        stopper.replay(point.bests)
        log(f"resuming from generation {start_gen}")
    members = starting_members(space, p, resume)
    t0 = time.perf_counter()

    def on_generation(record: GenerationRecord) -> None:
        runlog.append(record)
        runlog.write_population(record)
        keep_best_model(out_dir, run, record)
        prune_checkpoints(run, record.generation)
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
    grid = _tune(dataset, cfg, run, members, scheduler, stopper,
                 WorkerFailures(log, runlog.event, stopper.abort, p.max_failures),
                 f"tune-from-gen{start_gen}", address)
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
        raise interrupted(store, f"interrupted before generation {start_gen + 1} finished; "
                          f"{'continue' if done else 'start again'} with: {again}",
                          after_generation)
    last = scheduler.history[-1]
    if stopper.stopped_reason is None and last.generation < p.generations:
        raise interrupted(store, f"interrupted after generation {last.generation}; continue "
                          f"with: autolfads run --resume --out {store.location}",
                          after_generation)
    best = last.best()
    return PBTResult(out_dir, last.generation, best,
                     out_dir / layout.BEST_MODEL / "checkpoint.pt",
                     stopper.stopped_reason, time.perf_counter() - t0)


def _tune(dataset: Dataset, cfg: Config, run: str, members: list[dict],
          scheduler: BinaryTournamentPBT, stopper: PBTStopper, failures: WorkerFailures,
          name: str, address: str | None):
    """The Tuner call: one trial per worker, each restarted from its last checkpoint when it
    fails (callbacks.py); returns Ray's ResultGrid."""
    from ray import tune

    p = cfg.pbt
    with ray_session(address):
        if address is None:
            check_local_resources(p.cpus_per_worker, p.workers_per_gpu)
        note = unused_gpus(p.workers_per_gpu, cfg.train.device)
        if note:
            failures.log(note)
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
                name=name,
                storage_path=join(run, layout.TUNE),
                stop=stopper,
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                # A lost node or a crashed worker: the trial restarts from its last checkpoint
                # (the end of its last generation) on whatever node has room (callbacks.py).
                failure_config=tune.FailureConfig(max_failures=p.max_failures),
                callbacks=[failures, StartWatch(failures.log, resources)],
            ),
        )
        return tuner.fit()


def interrupted(store: Location, message: str,
                after_generation: Callable[[Path], None] | None) -> RunInterrupted:
    """The error to raise for an interrupted run, once the run directory says so too (status
    and the report then say 'interrupted' rather than 'in progress')."""
    put_json(store.local / layout.INTERRUPTED, {"message": message, "time": time.time()})
    with contextlib.suppress(Exception):  # the page is extra; the message must get out
        if after_generation is not None:
            after_generation(store.local)
        store.sync()
    return RunInterrupted(message)
