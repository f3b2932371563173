"""`autolfads status DIR`: the population at a glance, for a live or a finished run.

Everything comes from the run's own logs (pbt/hp_log.csv, decision_log.csv, best_worker.json,
config.yaml, metrics.json), so it works while the run is going, from another machine, and on a
run directory in a bucket (gs://, s3://: read through fsspec). Nothing is written.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autolfads.pbt import stop_rule
from autolfads.rundir import layout
from autolfads.rundir.location import Location
from autolfads.rundir.pbt_log import HPLog, read_decisions, read_hp_log

WIDE = 200  # when piped into a file or a test, rich would otherwise wrap at 80 columns


def status(location: str | Path, all_generations: bool = False,
           console: Console | None = None) -> None:
    """Print the population table, the best worker so far and the stop rule's progress."""
    rd = Location(location)
    rd.check("status")
    con = console or Console(width=None if sys.stdout.isatty() else WIDE)
    cfg, metrics = rd.config(), rd.metrics()
    pbt = cfg.get("pbt") if isinstance(cfg.get("pbt"), dict) else {}
    if not rd.is_pbt():
        _single_model(rd, con, cfg, metrics)
        return
    log = read_hp_log(rd)
    max_gen = pbt.get("generations", "?")
    if not log.rows:
        con.print(f"[bold]{rd.location}[/]: AutoLFADS run, population "
                  f"{pbt.get('population', '?')}; no generation has finished yet (0 of at most "
                  f"{max_gen})")
        _recent_events(rd, con)
        return
    last = max(log.generations)
    finished = metrics is not None and int(metrics.get("generations", 0)) >= last
    stopped = (rd.read_json(layout.INTERRUPTED) or {}).get("message")
    state = ("finished" if finished else stopped if stopped
             else "not finished (running, or interrupted: --resume)")
    con.print(f"[bold]{rd.location}[/]: AutoLFADS run, {state}; generation {last} of at most "
              f"{max_gen}, population {len(log.workers)}")
    con.print(_table(rd, log, all_generations))
    con.print(_best_line(rd, log))
    con.print(_progress_line(log, pbt, metrics if finished else None))
    if not finished:
        _recent_events(rd, con)


def _recent_events(rd: Location, con: Console, k: int = 3) -> None:
    """The last failures and restarts (pbt/events.log): why a run is stuck or ended."""
    lines = (rd.read_text(layout.EVENTS) or "").strip().splitlines()
    if lines:
        con.print(f"failures and restarts ({layout.EVENTS}, the last {min(k, len(lines))} of "
                  f"{len(lines)}):", highlight=False)
        for line in lines[-k:]:
            con.print(f"  {line}", markup=False, highlight=False)


def _table(rd: Location, log: HPLog, all_generations: bool) -> Table:
    decisions = read_decisions(rd)
    rows = log.rows if all_generations else log.latest()
    rows = sorted(rows, key=lambda r: (r["generation"], r["worker"]))
    best_of_gen = dict(zip(log.generations, log.best_by_generation(), strict=True))
    title = "all generations" if all_generations else f"generation {int(rows[0]['generation'])}"
    table = Table(title=f"population, {title} (* = best of its generation)",
                  caption="exploited from: after this generation the worker copied that "
                          "worker's weights and hyperparameters (its score)")
    for col in ("gen", "worker", "score", *log.names, "exploited from"):
        table.add_column(col, justify="left" if col == "exploited from" else "right")
    for r in rows:
        g, w = int(r["generation"]), int(r["worker"])
        d = decisions.get((g, w))
        # The decision logged with generation g: after it, this worker continued from the source's
        # weights and (perturbed) hyperparameters.
        src = (f"worker {d.source} ({_fmt(d.source_score)})" if d is not None and d.exploited
               else "" if d is not None else "(pending)")
        star = "*" if best_of_gen.get(g) == r["score"] else ""
        table.add_row(str(g), f"{w}{star}", _fmt(r["score"]),
                      *(_fmt(r[n]) for n in log.names), src,
                      style="bold" if star else None)
    return table


def _best_line(rd: Location, log: HPLog) -> str:
    best = log.best()
    if best is None:
        return "best so far: none (every score is NaN)"
    line = (f"best so far: worker {int(best['worker'])} in generation {int(best['generation'])}, "
            f"score {_fmt(best['score'])}")
    current = rd.read_json(layout.BEST_WORKER)
    if current and (current.get("worker"), current.get("generation")) != (
            int(best["worker"]), int(best["generation"])):
        line += (f"; best of the latest generation (the model the run keeps): worker "
                 f"{current.get('worker')}, score {_fmt(current.get('score'))}")
    return line


def _progress_line(log: HPLog, pbt: dict, metrics: dict | None) -> str:
    """The run's own stop rule (pbt/stop_rule.py) replayed on the logged best scores."""
    window = int(pbt.get("stop_generations", 4))
    min_imp = float(pbt.get("stop_min_improvement", 5e-4))
    bests = log.best_by_generation()
    improvement, n = stop_rule.improvement(bests, window), len(bests)
    rule = f"stops when the best score improves by less than {100 * min_imp:.3g}% over {window} " \
           "generations"
    if metrics is not None and metrics.get("stopped_reason"):
        return f"stopped: {metrics['stopped_reason']}"
    if improvement is None:
        return f"stop rule: {rule}; measured from generation {window + 1} on (now {n})"
    stops = stop_rule.stopped_at(bests, int(pbt.get("generations", 10**9)), window, min_imp)
    verdict = " -> stops now" if stops else ""
    return (f"stop rule: best improved by {100 * improvement:.3g}% over the last {window} "
            f"generations; {rule}{verdict}")


def _single_model(rd: Location, con: Console, cfg: dict, metrics: dict | None) -> None:
    rows = rd.train_log()
    train = cfg["train"] if isinstance(cfg.get("train"), dict) else {}
    state = "finished" if metrics is not None else "not finished (running, or interrupted)"
    if metrics is None and rd.exists(layout.TRAIN_STATE):
        state = (f"not finished (running, or interrupted: continue with autolfads train --out "
                 f"{rd.location} --resume)")
    con.print(f"[bold]{rd.location}[/]: single LFADS model (autolfads train, no population), "
              f"{state}; {len(rows)} of at most {train.get('epochs', '?')} epochs logged")
    table = Table(title="last epochs")
    cols = ("epoch", "train_recon", "valid_recon", "smoothed_valid_recon")
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows[-5:]:
        # train_log.csv counts epochs from 0; people (and metrics.json) count from 1.
        table.add_row(*(str(int(r[c]) + 1) if c == "epoch" else _fmt(r.get(c)) for c in cols))
    if rows:
        con.print(table)
    if metrics:
        keys = ("valid_recon", "bps", "nll_per_bin_valid", "r2_rates", "r2_smoothing")
        con.print("final: " + ", ".join(f"{k} {_fmt(metrics[k])}" for k in keys if k in metrics))


def _fmt(x: object) -> str:
    if not isinstance(x, (int, float)):
        return "-" if x is None else str(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3e}" if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4) else f"{x:.4f}"
