"""The defaults sweep of issue 14: single LFADS models with candidate hyperparameters on synthetic
systems of different difficulty, scored against the truth.

    python -m bench.sweep_defaults [--configs old,new,...] [--systems ...] [--jobs 2]
                                   [--results bench/defaults_sweep.jsonl] [--keep-inputs DIR]

Each (system, config) pair trains one model, `autolfads train` as a user runs it (the config's
overrides on top of the package defaults, 1 torch thread, `--jobs` models at a time), and appends
one JSON line to the results file: R^2 of the posterior-averaged rates against the true rates
(all trials and validation trials), the input-time accuracy where the system has inputs, the
smoothing baseline, epochs and wall time. Pairs already in the file are skipped, so an interrupted
sweep resumes. `python -m bench.sweep_defaults --table` prints the markdown table of a results
file (bench/defaults_sweep.md is that table with the notes on what it shows).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Synthetic systems: (builder, parameters). Lorenz: 65 conditions x trials_per_condition trials of
# 50 bins x 29 neurons; chaotic RNN: one input pulse per trial at a random time.
SYSTEMS: dict[str, tuple[str, dict]] = {
    "lorenz": ("lorenz", {}),
    "lorenz_sparse": ("lorenz", {"trials_per_condition": 4, "mean_rate_hz": 8.0}),
    "crnn": ("chaotic_rnn", {"pulse": 20.0}),
    "crnn_strong": ("chaotic_rnn", {"units": 200, "gain": 2.5, "pulse": 20.0}),
    "crnn_small": ("chaotic_rnn", {"units": 100, "gain": 2.0, "neurons": 30, "trials": 200,
                                   "pulse": 20.0}),
    "crnn_pulse50": ("chaotic_rnn", {"pulse": 50.0}),  # the built-in default since the sweep
}

_PUBLIC_REG = [  # the public implementation's published MC_Maze regularisation (issue 14)
    "model.dropout_rate=0.3", "train.kl_ic_scale=1e-7", "train.kl_co_scale=1e-7",
    "train.l2_gen_scale=0", "train.l2_con_scale=0",
    "train.kl_increase_epochs=80", "train.l2_increase_epochs=80",
]
_PUBLIC_SIZES = [
    "model.ic_enc_dim=100", "model.ci_enc_dim=80", "model.con_dim=80", "model.ic_dim=100",
    "model.gen_dim=200", "model.fac_dim=100",
]
# The defaults of the last release, for comparison after the package defaults changed.
_OLD = [
    "model.dropout_rate=0.05", "train.kl_ic_scale=1e-4", "train.kl_co_scale=1e-4",
    "train.l2_gen_scale=1e-3", "train.l2_con_scale=1e-3",
    "train.kl_increase_epochs=50", "train.l2_increase_epochs=50",
]

CONFIGS: dict[str, list[str]] = {
    "old": _OLD,
    "public": _PUBLIC_REG + _PUBLIC_SIZES,
    "public_reg": _PUBLIC_REG,  # = the new defaults (config.py), written out
    "kl1e-6_do0.2_l2_1e-4": [
        "model.dropout_rate=0.2", "train.kl_ic_scale=1e-6", "train.kl_co_scale=1e-6",
        "train.l2_gen_scale=1e-4", "train.l2_con_scale=1e-4",
        "train.kl_increase_epochs=80", "train.l2_increase_epochs=80",
    ],
    "kl1e-5_do0.2_l2_1e-4": [
        "model.dropout_rate=0.2", "train.kl_ic_scale=1e-5", "train.kl_co_scale=1e-5",
        "train.l2_gen_scale=1e-4", "train.l2_con_scale=1e-4",
        "train.kl_increase_epochs=80", "train.l2_increase_epochs=80",
    ],
    "kl1e-6_do0.1_l2_1e-4": [
        "model.dropout_rate=0.1", "train.kl_ic_scale=1e-6", "train.kl_co_scale=1e-6",
        "train.l2_gen_scale=1e-4", "train.l2_con_scale=1e-4",
        "train.kl_increase_epochs=80", "train.l2_increase_epochs=80",
    ],
    # The new defaults with a stronger prior on the inferred inputs only.
    "new_klco1e-5": [*_PUBLIC_REG, "train.kl_co_scale=1e-5"],
    "new_klco1e-4": [*_PUBLIC_REG, "train.kl_co_scale=1e-4"],
    "new": [],  # the package defaults as they are now
}


def _dataset(system: str):
    from autolfads.api import synth
    from autolfads.data.synthetic import lorenz_dataset

    kind, params = SYSTEMS[system]
    return lorenz_dataset(seed=0, **params) if kind == "lorenz" else synth(kind, **params)


def _one(system: str, config: str, keep_inputs: str) -> dict:
    import torch

    from autolfads.api import train

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = train(_dataset(system), config=None, quiet=True,
                overrides=[*CONFIGS[config], "train.threads=1"])
    m = res.metrics
    if keep_inputs and res.dataset.true_input_times is not None:  # to rescore the input metric
        import numpy as np

        np.savez_compressed(Path(keep_inputs) / f"{system}__{config}.npz",
                            inputs=res._all("inferred_inputs"),
                            true_times=res.dataset.true_input_times)
    keep = ("r2_rates", "r2_rates_valid", "r2_smoothing", "input_time_accuracy",
            "input_time_accuracy_valid", "bps_valid", "epochs", "best_epoch",
            # test trials (data with >= 100 trials has them since issue 12)
            "r2_rates_test", "r2_test", "bps_test", "input_time_accuracy_test")
    return {"system": system, "config": config, **{k: m[k] for k in keep if k in m},
            "wall_s": round(time.perf_counter() - t0, 1)}


def _work(args: tuple[str, str, str, str]) -> dict:
    system, config, results, keep_inputs = args
    try:
        row = _one(system, config, keep_inputs)
    except Exception as e:  # noqa: BLE001  (one failed pair must not end the sweep)
        row = {"system": system, "config": config, "error": f"{type(e).__name__}: {e}"}
    with open(results, "a") as f:  # one short line per write: appends of the workers interleave
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def read_rows(results: Path) -> list[dict]:
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def table(rows: list[dict]) -> str:
    """R^2 (validation trials) / input-time accuracy per system (columns) and config (rows)."""
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    lines = ["| config | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for c in configs:
        cells = []
        for s in systems:
            r = next((r for r in rows if r["system"] == s and r["config"] == c), None)
            if r is None:
                cells.append("")
            elif "error" in r:
                cells.append("error")
            else:
                cell = f"{r['r2_rates_valid']:.3f}"
                if "input_time_accuracy_valid" in r:
                    cell += f" / {100 * r['input_time_accuracy_valid']:.0f}%"
                cells.append(cell + f" ({r['epochs']} ep)")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    smooth = [next((f"{r['r2_smoothing']:.3f}" for r in rows
                    if r["system"] == s and "r2_smoothing" in r), "") for s in systems]
    lines.append("| Gaussian smoothing (oracle width) | " + " | ".join(smooth) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="old,new,kl1e-6_do0.2_l2_1e-4")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--results", type=Path, default=HERE / "defaults_sweep.jsonl")
    ap.add_argument("--keep-inputs", default="", help="folder for each run's inferred inputs")
    ap.add_argument("--table", action="store_true", help="print the table of --results and exit")
    a = ap.parse_args()
    if a.table:
        print(table(read_rows(a.results)))
        return
    done = {(r["system"], r["config"]) for r in read_rows(a.results) if "error" not in r}
    todo = [(s, c, str(a.results), a.keep_inputs) for c in a.configs.split(",")
            for s in a.systems.split(",") if (s, c) not in done]
    for s, c, _, _ in todo:
        if s not in SYSTEMS or c not in CONFIGS:
            raise SystemExit(f"unknown system or config: {s} / {c}")
    with mp.get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        pool.map(_work, todo, chunksize=1)
    print(table(read_rows(a.results)))


if __name__ == "__main__":
    main()
