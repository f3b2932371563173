"""The run's own record of the population (DESIGN.md §3), and where --resume continues from.

  pbt/hp_log.csv          generation, worker, score, <hyperparameters used in that generation>
  pbt/decision_log.csv    generation, worker, exploited, source_worker, score, source_score
  pbt/best_worker.json    the best worker of the latest generation
  pbt/population.json     where each worker starts the next generation (what --resume reads)
  pbt/events.log          failures and restarts, one timestamped line each

A run is finished when the stop rule, under the config it is resumed with, stops it at its last
saved generation and metrics.json holds the outputs of that generation. Resuming it would start
Ray only to stop again, so it is an error that says how to train further instead.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autolfads.config import PBTConfig
from autolfads.errors import UserInputError
from autolfads.pbt.scheduler import GenerationRecord
from autolfads.pbt.stop_rule import stop_reason
from autolfads.pbt.trainable import worker_checkpoint
from autolfads.storage import atomic_write, join, put_json


class RunLog:
    """Written after every generation; read back by --resume."""

    def __init__(self, out_dir: Path, run: str, hp_names: list[str]):
        self.dir = out_dir / "pbt"
        self.run = run  # where the workers' checkpoints are (a bucket for a remote run)
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

    def read_population(self) -> dict | None:
        path = self.dir / "population.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def event(self, message: str) -> None:
        """Append a timestamped line to pbt/events.log (restarts, failures)."""
        self.dir.mkdir(parents=True, exist_ok=True)
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

    def best_by_generation(self, upto: int | None = None) -> list[float]:
        path = self.dir / "hp_log.csv"
        if not path.is_file():
            return []
        best: dict[int, float] = {}
        with path.open() as f:
            for row in csv.DictReader(f):
                g, s = int(row["generation"]), float(row["score"])
                if upto is None or g <= upto:
                    best[g] = (min(best.get(g, np.inf), s) if np.isfinite(s)
                               else best.get(g, np.inf))
        return [best[g] for g in sorted(best)]


@dataclass
class ResumePoint:
    generation: int  # generations completed and saved
    members: list[dict]  # population.json's members: worker, hp, checkpoint
    bests: list[float]  # best score of generations 1..generation
    finished: str | None  # why the stop rule ends the run right here, under the current config


def resume_point(out_dir: Path, location: str, p: PBTConfig) -> ResumePoint:
    """Where `autolfads run --resume` continues the run in `out_dir` (`location` is what the user
    named it). Raises UserInputError, changing nothing, when there is nothing to continue."""
    runlog = RunLog(out_dir, location, [])
    pop = runlog.read_population()
    if pop is None:
        if has_results(out_dir):
            raise UserInputError(f"--resume: {location} holds results but no PBT generation to "
                                 "continue from (no pbt/population.json); choose another --out "
                                 "for a new run")
        raise UserInputError(f"--resume: {join(location, 'pbt', 'population.json')} not found; "
                             "the run has no completed generation to continue from (start it "
                             f"again with: autolfads run --force --out {location})")
    g = int(pop["generation"])
    if len(pop["members"]) != p.population:
        raise UserInputError(f"--resume: the run has {len(pop['members'])} workers, not "
                             f"--population {p.population}; resume with the same population")
    bests = runlog.best_by_generation(upto=g)
    finished = stop_reason(bests, p.generations, p.stop_generations, p.stop_min_improvement)
    point = ResumePoint(g, pop["members"], bests, finished)
    if finished is not None and outputs_generation(out_dir) == g:
        raise UserInputError(finished_message(point, location, p))
    return point


def finished_message(point: ResumePoint, location: str, p: PBTConfig) -> str:
    """One line: the run is finished, nothing was changed, and the command that trains it
    further (each rule that would stop it again at once is relaxed in that command)."""
    g = point.generation
    plateau = stop_reason(point.bests, 10**9, p.stop_generations, p.stop_min_improvement)
    flags = ""
    if g >= p.generations:
        flags += f" --generations N (N > {g})"
    if plateau is not None:
        flags += " --set pbt.stop_min_improvement=0 (else the plateau rule stops it again at once)"
    return (f"--resume: the run in {location} is finished: it stopped after generation {g} "
            f"({point.finished}); its results are in {join(location, 'output')}; nothing was "
            f"changed. To train it further: autolfads run --resume --out {location}{flags}")


def outputs_generation(out_dir: Path) -> int | None:
    """The generation whose best worker the run's outputs (metrics.json) come from, if any."""
    path = out_dir / "metrics.json"
    try:
        return int(json.loads(path.read_text())["generations"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def has_results(out_dir: Path) -> bool:
    """Whether a run holds anything that --force would destroy: a completed generation or
    outputs."""
    return any((out_dir / name).exists() for name in ("pbt/population.json", "metrics.json",
                                                       "output"))


def _append_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    buf = io.StringIO()
    w = csv.writer(buf)
    if new:
        w.writerow(header)
    w.writerows(rows)
    with path.open("a") as f:
        f.write(buf.getvalue())
