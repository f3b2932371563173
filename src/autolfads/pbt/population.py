"""The population's bookkeeping around the Tuner call: where each worker starts (sampled for a
new run, read back for a resumed one), what is kept after every generation (logs, the best
worker's model, pruned checkpoints), and the result of a run whose PBT had already finished.

Run directory (DESIGN.md §3), besides the logs (rundir/pbt_log.py):
  pbt/checkpoints/        each worker's state at the end of the latest generation
  best_model/             checkpoint.pt + hparams.json of the best worker
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autolfads.config import PBTConfig
from autolfads.pbt.resume import ResumePoint
from autolfads.pbt.scheduler import member_config
from autolfads.pbt.search_space import HyperParam, sample_initial
from autolfads.rundir import layout, location
from autolfads.rundir.layout import join, worker_checkpoint
from autolfads.rundir.location import Location, get_bytes, put_bytes, put_json
from autolfads.rundir.records import Decision, GenerationRecord


@dataclass
class PBTResult:
    out_dir: Path
    generations: int
    best: Decision
    best_checkpoint: Path
    stopped_reason: str | None
    wall_s: float


def starting_members(space: dict[str, HyperParam], p: PBTConfig,
                     resume: ResumePoint | None) -> list[dict]:
    """Trial configs of the population: each worker's hyperparameters and, on resume, the
    checkpoint it continues from."""
    if resume is not None:
        return [member_config(m["worker"], m["hp"], m["checkpoint"]) for m in resume.members]
    rng = np.random.default_rng(p.seed)
    return [member_config(w, hp) for w, hp in enumerate(sample_initial(space, p.population, rng))]


def finished_result(store: Location, run: str, generation: int, reason: str) -> PBTResult:
    """A run whose PBT ended but whose outputs were never written: the best worker of its last
    generation (best_worker.json is written before population.json) is the model to sample."""
    info = json.loads((store.local / layout.BEST_WORKER).read_text())
    best = Decision(int(info["worker"]), float(info["score"]), dict(info["hyperparameters"]))
    keep_best_model(store.local, run, GenerationRecord(generation, [best]))
    store.sync()
    return PBTResult(store.local, generation, best,
                     store.local / layout.BEST_MODEL / "checkpoint.pt", reason, 0.0)


def keep_best_model(out_dir: Path, run: str, record: GenerationRecord) -> None:
    best = record.best()
    dst = out_dir / layout.BEST_MODEL
    put_bytes(dst / "checkpoint.pt", get_bytes(worker_checkpoint(run, best.worker,
                                                                 record.generation)))
    put_json(dst / "hparams.json", {"worker": best.worker, "generation": record.generation,
                                        "score": best.score, "hyperparameters": best.hparams})


def prune_checkpoints(run: str, generation: int) -> None:
    """Keep only the latest generation's worker checkpoints (what --resume needs), and the last
    two of Ray's copies per trial (Ray keeps all so that PBT can always find a source's)."""
    for path in location.glob(join(run, layout.CHECKPOINTS, "w*", "gen*.pt")):
        if int(path.rsplit("gen", 1)[1][:3]) < generation:
            location.remove(path)
    trials: dict[str, list[str]] = {}
    for path in location.glob(join(run, layout.TUNE, "*", "*", "checkpoint_*")):
        trials.setdefault(path.rsplit("/", 1)[0], []).append(path)
    for ckpts in trials.values():
        for old in sorted(ckpts)[:-2]:
            location.remove_tree(old)
