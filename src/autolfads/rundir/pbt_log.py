"""The PBT logs of a run (DESIGN.md §3): written by the runner after every generation, read back
by --resume, `autolfads status` and the report.

  pbt/hp_log.csv          generation, worker, score, <hyperparameters used in that generation>
  pbt/decision_log.csv    generation, worker, exploited, source_worker, score, source_score
  pbt/best_worker.json    the best worker of the latest generation
  pbt/population.json     where each worker starts the next generation (what --resume reads)
  pbt/events.log          failures and restarts, one timestamped line each

The reader is tolerant of a live run: files that do not exist yet read as empty, and a CSV row
that is half written (the runner appends while we read) is skipped rather than failing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.layout import join, worker_checkpoint
from autolfads.rundir.location import Location, atomic_write, number, put_json
from autolfads.rundir.records import Decision, GenerationRecord, best_score


class RunLog:
    """The writer: called after every generation by the runner, in its local run directory
    (`out_dir`); `run` is where the workers' checkpoints are (a bucket for a remote run)."""

    def __init__(self, out_dir: Path, run: str, hp_names: list[str]):
        self.out_dir = out_dir
        self.run = run
        self.hp_names = hp_names

    def append(self, record: GenerationRecord) -> None:
        g = record.generation
        hp_rows = [[g, d.worker, d.score, *(d.hparams[k] for k in self.hp_names)]
                   for d in record.decisions]
        dec_rows = [[g, d.worker, str(d.exploited).lower(),
                     "" if d.source is None else d.source, d.score,
                     "" if d.source_score is None else d.source_score]
                    for d in record.decisions]
        self._append_csv(layout.HP_LOG, [*layout.HP_COLUMNS, *self.hp_names], hp_rows)
        self._append_csv(layout.DECISION_LOG, list(layout.DECISION_COLUMNS), dec_rows)
        best = record.best()
        put_json(self.out_dir / layout.BEST_WORKER, {
            "worker": best.worker, "generation": g, "score": best.score,
            "hyperparameters": best.hparams})

    def write_population(self, record: GenerationRecord) -> None:
        members = []
        for d in record.decisions:
            start = d.source if d.exploited else d.worker
            hp = d.new_hparams if d.exploited else d.hparams
            members.append({"worker": d.worker, "hp": hp,
                            "checkpoint": worker_checkpoint(self.run, start, record.generation)})
        put_json(self.out_dir / layout.POPULATION,
                 {"generation": record.generation, "members": members})

    def event(self, message: str) -> None:
        """Append a timestamped line to pbt/events.log (restarts, failures)."""
        path = self.out_dir / layout.EVENTS
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")

    def truncate_after(self, generation: int) -> None:
        """Drop log rows of a generation that was logged but not saved for resume (an
        interruption between the two); the resumed run writes them again."""
        for name in (layout.HP_LOG, layout.DECISION_LOG):
            path = self.out_dir / name
            if not path.is_file():
                continue
            lines = path.read_text().splitlines(keepends=True)
            kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= generation]
            if len(kept) != len(lines):
                atomic_write(path, lambda tmp, kept=kept: tmp.write_text("".join(kept)))

    def _append_csv(self, name: str, header: list[str], rows: list[list]) -> None:
        path = self.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.writer(buf)
        if not path.exists():
            w.writerow(header)
        w.writerows(rows)
        with path.open("a") as f:
            f.write(buf.getvalue())


@dataclass
class HPLog:
    """pbt/hp_log.csv: the score and hyperparameters of every worker in every generation."""

    names: list[str] = field(default_factory=list)  # hyperparameter columns, in file order
    rows: list[dict[str, float]] = field(default_factory=list)  # generation/worker kept as floats

    @classmethod
    def parse(cls, text: str) -> HPLog:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if not header or tuple(header[:3]) != layout.HP_COLUMNS:
            return cls()
        rows = []
        for rec in reader:
            if len(rec) != len(header):
                continue  # a line the runner is still appending
            try:
                rows.append({k: number(v) for k, v in zip(header, rec, strict=True)})
            except ValueError:
                continue
        return cls(header[3:], rows)

    @property
    def generations(self) -> list[int]:
        return sorted({int(r["generation"]) for r in self.rows})

    @property
    def workers(self) -> list[int]:
        return sorted({int(r["worker"]) for r in self.rows})

    def table(self, column: str) -> np.ndarray:
        """generations x workers array of one column (NaN where a row is missing)."""
        gi = {g: i for i, g in enumerate(self.generations)}
        wi = {w: i for i, w in enumerate(self.workers)}
        out = np.full((len(gi), len(wi)), np.nan)
        for r in self.rows:
            out[gi[int(r["generation"])], wi[int(r["worker"])]] = r[column]
        return out

    def latest(self) -> list[dict[str, float]]:
        if not self.rows:
            return []
        g = max(self.generations)
        return sorted((r for r in self.rows if int(r["generation"]) == g),
                      key=lambda r: r["worker"])

    def best_by_generation(self, upto: int | None = None) -> list[float]:
        """The best score of each generation (up to `upto`), in order: what the stop rule was
        given while the run went (the runner's scheduler uses the same `best_score`)."""
        scores: dict[int, list[float]] = {}
        for r in self.rows:
            g = int(r["generation"])
            if upto is None or g <= upto:
                scores.setdefault(g, []).append(r["score"])
        return [best_score(scores[g]) for g in sorted(scores)]

    def best(self) -> dict[str, float] | None:
        finite = [r for r in self.rows if math.isfinite(r["score"])]
        return min(finite, key=lambda r: r["score"]) if finite else None


def read_hp_log(loc: Location) -> HPLog:
    return HPLog.parse(loc.read_text(layout.HP_LOG) or "")


def read_decisions(loc: Location) -> dict[tuple[int, int], Decision]:
    """(generation, worker) -> that worker's exploit decision at the end of the generation (its
    hyperparameters are in hp_log.csv)."""
    out: dict[tuple[int, int], Decision] = {}
    for row in csv.DictReader(io.StringIO(loc.read_text(layout.DECISION_LOG) or "")):
        try:
            g, w = int(row["generation"]), int(row["worker"])
            exploited = row["exploited"].strip().lower() == "true"
            src = int(row["source_worker"]) if exploited else None
            out[(g, w)] = Decision(w, number(row.get("score")), {}, src,
                                   number(row.get("source_score")) if exploited else None)
        except (KeyError, ValueError, AttributeError, TypeError):
            continue  # a half-written last line of a live run
    return out


def read_population(loc: Location) -> dict | None:
    """pbt/population.json (None before the first generation is saved)."""
    text = loc.read_text(layout.POPULATION)
    if text is None:
        return None
    try:  # written whole (temp file + rename), so a bad one was damaged afterwards
        pop = json.loads(text)
        int(pop["generation"]), list(pop["members"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserInputError(f"{join(loc.location, layout.POPULATION)}: is damaged ({e}); it "
                             "says where each worker continues, so the run cannot be resumed "
                             "without it") from None
    return pop
