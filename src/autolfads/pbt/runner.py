"""Start or resume an AutoLFADS run: Ray (local on 127.0.0.1, or a cluster), the population,
per-generation logs, and the best worker's checkpoint.

Run directory (DESIGN.md §3):
  pbt/hp_log.csv          generation, worker, score, <hyperparameters used in that generation>
  pbt/decision_log.csv    generation, worker, exploited, source_worker, score, source_score
  pbt/best_worker.json    the best worker of the latest generation
  pbt/population.json     where each worker starts the next generation (what --resume reads)
  pbt/checkpoints/        each worker's state at the end of the latest generation
  best_model/             checkpoint.pt + hparams.json of the best worker
"""

from __future__ import annotations

import contextlib
import csv
import io
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
from ray.tune import Callback

from autolfads import storage
from autolfads.config import Config
from autolfads.data.dataset import Dataset
from autolfads.errors import RunFailed, RunInterrupted, UserInputError
from autolfads.pbt.scheduler import (
    BinaryTournamentPBT,
    Decision,
    GenerationRecord,
    member_config,
)
from autolfads.pbt.search_space import build_space, sample_initial
from autolfads.pbt.stopper import PBTStopper
from autolfads.pbt.trainable import lfads_worker, worker_checkpoint
from autolfads.storage import RunStore, atomic_write, get_bytes, join, put_bytes, put_json


@dataclass
class PBTResult:
    out_dir: Path
    generations: int
    best: Decision
    best_checkpoint: Path
    stopped_reason: str | None
    wall_s: float


class RunLog:
    """The run's own record of the population, written after every generation."""

    def __init__(self, out_dir: Path, run: str, hp_names: list[str]):
        self.dir = out_dir / "pbt"
        self.run = run  # where the workers' checkpoints are (a bucket for a remote run)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hp_names = hp_names

    def append(self, record: GenerationRecord) -> None:
        g = record.generation
        hp_rows = [[g, d.worker, d.score, *(d.hparams[k] for k in self.hp_names)]
                   for d in record.decisions]
        dec_rows = [[g, d.worker, str(d.exploited).lower(),
                     "" if d.source is None else d.source, d.score,
                     "" if d.source_score is None else d.source_score]
                    for d in record.decisions]
        _append_csv(self.dir / "hp_log.csv", ["generation", "worker", "score", *self.hp_names],
                    hp_rows)
        _append_csv(self.dir / "decision_log.csv", ["generation", "worker", "exploited",
                    "source_worker", "score", "source_score"], dec_rows)
        best = record.best()
        put_json(self.dir / "best_worker.json", {
            "worker": best.worker, "generation": g, "score": best.score,
            "hyperparameters": best.hparams})

    def write_population(self, record: GenerationRecord) -> None:
        members = []
        for d in record.decisions:
            start = d.source if d.exploited else d.worker
            hp = d.new_hparams if d.exploited else d.hparams
            members.append({"worker": d.worker, "hp": hp,
                            "checkpoint": worker_checkpoint(self.run, start, record.generation)})
        put_json(self.dir / "population.json",
                    {"generation": record.generation, "members": members})

    def read_population(self) -> dict:
        path = self.dir / "population.json"
        if not path.is_file():
            raise UserInputError(f"--resume: {path} not found; the run has no completed "
                                 "generation to continue from (start it again with --force)")
        return json.loads(path.read_text())

    def event(self, message: str) -> None:
        """Append a timestamped line to pbt/events.log (restarts, failures)."""
        with (self.dir / "events.log").open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")

    def truncate_after(self, generation: int) -> None:
        """Drop log rows of a generation that was logged but not saved for resume (an
        interruption between the two); the resumed run writes them again."""
        for name in ("hp_log.csv", "decision_log.csv"):
            path = self.dir / name
            if not path.is_file():
                continue
            lines = path.read_text().splitlines(keepends=True)
            kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= generation]
            if len(kept) != len(lines):
                atomic_write(path, lambda tmp, kept=kept: tmp.write_text("".join(kept)))

    def best_by_generation(self) -> list[float]:
        path = self.dir / "hp_log.csv"
        if not path.is_file():
            return []
        best: dict[int, float] = {}
        with path.open() as f:
            for row in csv.DictReader(f):
                g, s = int(row["generation"]), float(row["score"])
                best[g] = min(best.get(g, np.inf), s) if np.isfinite(s) else best.get(g, np.inf)
        return [best[g] for g in sorted(best)]


def run_pbt(
    dataset: Dataset,
    cfg: Config,
    store: RunStore,
    *,
    address: str | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    after_generation: Callable[[Path], None] | None = None,
) -> PBTResult:
    """`after_generation(local_run_dir)` runs once the generation's logs are written (the API
    refreshes the HTML report there); it is for people watching, so its failure is only logged."""
    from ray import tune

    p = cfg.pbt
    # Ray runs each worker in a directory of its own: a local run location must be absolute.
    run = store.location if store.remote else str(Path(store.location).resolve())
    out_dir = store.local
    space = build_space(p.search_space)
    names = list(space)
    runlog = RunLog(out_dir, run, names)
    start_gen = 0
    if resume:
        pop = runlog.read_population()
        start_gen = int(pop["generation"])
        runlog.truncate_after(start_gen)
        members = [member_config(m["worker"], m["hp"], m["checkpoint"]) for m in pop["members"]]
        if len(members) != p.population:
            raise UserInputError(f"--resume: the run has {len(members)} workers, not "
                                 f"--population {p.population}; resume with the same population")
        log(f"resuming from generation {start_gen}")
    else:
        rng = np.random.default_rng(p.seed)
        members = [member_config(w, hp) for w, hp in enumerate(sample_initial(space, p.population,
                                                                              rng))]
    if start_gen >= p.generations:
        raise UserInputError(f"--generations {p.generations}: the run already completed "
                             f"{start_gen} generations; raise --generations to continue")

    t0 = time.perf_counter()
    stopper = PBTStopper(p.generations, p.stop_generations, p.stop_min_improvement)
    for g, best in enumerate(runlog.best_by_generation(), start=1):
        stopper.record(g, best)  # a resumed run's history counts towards the stop rule

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
                # (the end of its last generation) on whatever node has room.
                failure_config=tune.FailureConfig(max_failures=3),
                callbacks=[_Restarts(lambda m: (log(m), runlog.event(m)))],
            ),
        )
        grid = tuner.fit()
    if not scheduler.history:
        if grid.errors:
            raise RunFailed(f"AutoLFADS workers failed: {grid.errors[0]}")
        raise RunInterrupted("interrupted before the first generation finished; start again "
                             f"with: autolfads run --force --out {store.location}")
    last = scheduler.history[-1]
    if stopper.stopped_reason is None and last.generation < p.generations:
        raise RunInterrupted(f"interrupted after generation {last.generation}; continue with: "
                             f"autolfads run --resume --out {store.location}")
    best = last.best()
    return PBTResult(out_dir, last.generation, best,
                     out_dir / "best_model" / "checkpoint.pt",
                     stopper.stopped_reason, time.perf_counter() - t0)


class _Restarts(Callback):
    """Says when Ray restarts a worker after a failure (e.g. its node was lost)."""

    def __init__(self, say: Callable[[str], object]):
        self.say = say

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.say(f"worker {trial.config['member']['worker']} failed "
                 f"({_first_line(trial.error_file)}); restarting it from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.say(f"worker {trial.config['member']['worker']} failed for good "
                 f"({_first_line(trial.error_file)})")


def _first_line(error_file: str | None) -> str:
    """The exception line of a Ray error file (its last non-empty line)."""
    try:
        lines = [ln.strip() for ln in Path(error_file or "").read_text().splitlines()]
        return next(ln for ln in reversed(lines) if ln)[:200]
    except (OSError, StopIteration):
        return "no error details"


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

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our own logs suffice
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")
    # Our one line per generation replaces Ray's progress tables (the old reporter at verbose=0
    # prints nothing; the new one still prints its boxes).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray's own warnings (token auth notice, no result.json since our logs replace it, waiting
    # for resources at generation boundaries) are noise next to our per-generation lines.
    for name in ("ray", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    temp = None
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        # With this variable Ray binds every port to 127.0.0.1 instead of the machine's address
        # (measured, see RAY_NOTES.md); it rules out multi-node, which a local run never needs.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
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
    for path in storage.glob(join(run, "pbt", "checkpoints", "w*", "gen*.pt")):
        if int(path.rsplit("gen", 1)[1][:3]) < generation:
            storage.remove(path)
    trials: dict[str, list[str]] = {}
    for path in storage.glob(join(run, "pbt", "tune", "*", "*", "checkpoint_*")):
        trials.setdefault(path.rsplit("/", 1)[0], []).append(path)
    for ckpts in trials.values():
        for old in sorted(ckpts)[:-2]:
            storage.remove_tree(old)


def _append_csv(path: Path, header: list[str], rows: list[list]) -> None:
    new = not path.exists()
    buf = io.StringIO()
    w = csv.writer(buf)
    if new:
        w.writerow(header)
    w.writerows(rows)
    with path.open("a") as f:
        f.write(buf.getvalue())

