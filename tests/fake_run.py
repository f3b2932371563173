"""Fabricated run directories (DESIGN.md §3) for the report/status/export tests.

Building a real AutoLFADS run takes ~30 s of Ray; these tests only read run directories, so the
files are written directly: config.yaml, run.json, pbt logs, outputs (through the real writers),
metrics.json. The fake rates are the true rates times a trial-specific factor, so a test can tell
trials apart and check that exports keep the original trial order.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from conftest import tiny_dataset

from autolfads.config import Config, config_to_yaml
from autolfads.data.writers import write_lfads_h5
from autolfads.pbt.search_space import default_space, perturb, sample_initial
from autolfads.results import write_results

HP_NAMES = list(default_space())


def fake_posterior(ds, co_dim=2, fac_dim=6, ic_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    post = {}
    for split, inds in (("train", ds.train_inds), ("valid", ds.valid_inds)):
        truth = getattr(ds, f"{split}_truth")
        base = truth if truth is not None else getattr(ds, f"{split}_data") + 0.5
        # trial k's rates are scaled by 1 + k / 100: every trial is distinguishable
        post[f"{split}_rates"] = (base * (1 + inds[:, None, None] / 100.0)).astype(np.float32)
        post[f"{split}_factors"] = rng.normal(size=(len(inds), ds.n_time, fac_dim))
        post[f"{split}_inferred_inputs"] = rng.normal(size=(len(inds), ds.n_time, co_dim))
        post[f"{split}_ic_mean"] = rng.normal(size=(len(inds), ic_dim))
    return post


def write_logs(run: Path, population: int, generations: int, seed: int = 0,
               partial_line: bool = False, skip_last_decisions: bool = False) -> list[dict]:
    """hp_log.csv / decision_log.csv like the runner's: the worst worker copies the best one."""
    rng = np.random.default_rng(seed)
    space = default_space()
    hps = sample_initial(space, population, rng)
    pbt = run / "pbt"
    pbt.mkdir(parents=True, exist_ok=True)
    hp_rows, dec_rows = [], []
    for g in range(1, generations + 1):
        scores = [1.6 - 0.01 * g - 0.002 * w + 0.001 * rng.random() for w in range(population)]
        order = np.argsort(scores)
        best, worst = int(order[0]), int(order[-1])
        for w in range(population):
            hp_rows.append([g, w, scores[w], *(hps[w][k] for k in HP_NAMES)])
            exploit = w == worst and g < generations
            dec_rows.append([g, w, str(exploit).lower(), best if exploit else "",
                             scores[w], scores[best] if exploit else ""])
        if g < generations:
            hps[worst] = perturb(hps[best], space, rng)
    if skip_last_decisions:
        dec_rows = [r for r in dec_rows if r[0] < generations]
    _csv(pbt / "hp_log.csv", ["generation", "worker", "score", *HP_NAMES], hp_rows)
    _csv(pbt / "decision_log.csv", ["generation", "worker", "exploited", "source_worker",
                                    "score", "source_score"], dec_rows)
    if partial_line:  # the runner caught mid-append
        with (pbt / "hp_log.csv").open("a") as f:
            f.write(f"{generations + 1},0,1.5")
    last = [r for r in hp_rows if r[0] == generations]
    b = min(last, key=lambda r: r[2])
    (pbt / "best_worker.json").write_text(json.dumps({
        "worker": b[1], "generation": generations, "score": b[2],
        "hyperparameters": dict(zip(HP_NAMES, b[3:], strict=True))}))
    return hp_rows


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def make_run(root: Path, *, pbt: bool = True, truth: bool = True, finished: bool = True,
             population: int = 3, generations: int = 3, co_dim: int = 2,
             bin_size_s: float | None = 0.01, conditions: bool = True, **log_options) -> Path:
    """A run directory under root/run (data file at root/data.h5); returns the run directory."""
    root.mkdir(parents=True, exist_ok=True)
    ds = tiny_dataset(n_trials=40)
    if not truth:
        ds.train_truth = ds.valid_truth = None
    ds.bin_size_s = bin_size_s
    if conditions:
        ds.conditions = np.arange(ds.n_trials) % 4
    data = root / "data.h5"
    write_lfads_h5(data, ds)
    ds.source = str(data)  # what load_dataset records, so the report can find the spikes
    run = root / "run"
    run.mkdir()
    cfg = Config()
    cfg.pbt.population, cfg.pbt.generations, cfg.pbt.epochs_per_generation = population, 5, 2
    cfg.model.co_dim = co_dim
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    extra: dict = {"valid_recon": 1.5, "wall_s": 12.0, "epochs": 6}
    if pbt:
        (run / "run.json").write_text(json.dumps({"data": str(data)}))
        write_logs(run, population, generations, **log_options)
        extra.update(generations=generations, best_worker=0,
                     stopped_reason=f"reached the maximum of {generations} generations")
    else:
        rows = [{"epoch": e, "train_recon": 1.6 - 0.01 * e, "valid_recon": 1.61 - 0.01 * e,
                 "smoothed_valid_recon": 1.61 - 0.009 * e} for e in range(6)]
        with (run / "train_log.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        extra["best_epoch"] = 6
    if finished:
        write_results(run, ds, fake_posterior(ds, co_dim=co_dim), extra, say=lambda _: None)
    return run
