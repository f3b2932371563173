"""Where each file of a run directory is (DESIGN.md §3), the columns of its CSV logs, and the axis
orders of its outputs. Paths are relative to the run's root and use "/", in a bucket as on disk.
Nothing here reads or writes a file.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

CONFIG = "config.yaml"  # the fully resolved config
METRICS = "metrics.json"  # written when the run's outputs are
RUN_JSON = "run.json"  # where an AutoLFADS run's data came from (for --resume and the report)
TRAIN_LOG = "train_log.csv"  # autolfads train: one row per epoch
MODEL_CHECKPOINT = "model/checkpoint.pt"  # autolfads train: the kept model
# autolfads train: the whole training state after the latest epoch, for --resume; removed once
# the run's outputs are written.
TRAIN_STATE = "model/train_state.pt"

PBT = "pbt"
HP_LOG = "pbt/hp_log.csv"
DECISION_LOG = "pbt/decision_log.csv"
BEST_WORKER = "pbt/best_worker.json"  # the best worker of the latest generation
POPULATION = "pbt/population.json"  # where each worker starts the next generation
INTERRUPTED = "pbt/interrupted.json"  # an interrupted run: when, and how to continue it
EVENTS = "pbt/events.log"  # failures and restarts
CHECKPOINTS = "pbt/checkpoints"  # each worker's state at the end of the latest generation
TUNE = "pbt/tune"  # Ray Tune's own checkpoints
BEST_MODEL = "best_model"  # checkpoint.pt + hparams.json of the chosen worker

OUTPUT = "output"
OUTPUT_STEM = "output/lfads_output"  # + .h5 and .mat; `autolfads export` adds .npz etc.
OUTPUT_H5 = f"{OUTPUT_STEM}.h5"
OUTPUT_MAT = f"{OUTPUT_STEM}.mat"
REPORT = "report"  # index.html and its PNGs

# hp_log.csv: these, then one column per hyperparameter.
HP_COLUMNS = ("generation", "worker", "score")
DECISION_COLUMNS = ("generation", "worker", "exploited", "source_worker", "score", "source_score")

# Files only a run writes: a folder holding one is a run's, and only then may --force remove
# its RUN_ENTRIES (a folder of the user's may have an output/ or a config.yaml of its own).
RUN_EVIDENCE = (RUN_JSON, METRICS, TRAIN_LOG, HP_LOG, TRAIN_STATE, MODEL_CHECKPOINT)
# Everything a run writes at its top level: --force removes these and nothing else (a data file
# or notes kept beside a run stay).
RUN_ENTRIES = (CONFIG, METRICS, RUN_JSON, TRAIN_LOG, "model", PBT, BEST_MODEL, OUTPUT, REPORT)
RUN_FILES = (CONFIG, METRICS, HP_LOG)  # status/report/export: any one makes a run directory
RESULTS = (POPULATION, METRICS, OUTPUT)  # what --force would destroy
# What --resume needs from a run kept in a bucket (the checkpoints stay there); metrics.json
# tells a finished run.
RESUME_FILES = (CONFIG, RUN_JSON, HP_LOG, DECISION_LOG, POPULATION, BEST_WORKER, METRICS)
NOT_UPLOADED = (TUNE, CHECKPOINTS)  # the workers and Ray write these to the run themselves
NOT_PULLED = (TUNE, CHECKPOINTS, BEST_MODEL)  # large, and not needed to look at a run

# Axis orders: ours (every array trials first) and the MATLAB tutorial's.
INTERNAL_LAYOUT = "trials_time_neurons"
MATLAB_LAYOUT = "neurons_time_trials"


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def join(base: str | Path, *parts: str) -> str:
    """A location inside `base`: a URI for a URI, else a local path."""
    if is_uri(base):
        return posixpath.join(str(base).rstrip("/"), *parts)
    return str(Path(base, *parts))


def worker_checkpoint(run: str | Path, worker: int, generation: int) -> str:
    """Where a worker's end-of-generation state is kept in the run (a path or a bucket URI), for
    resume and best_model/; Ray keeps its own copies for exploiting."""
    return join(run, CHECKPOINTS, f"w{worker:02d}", f"gen{generation:03d}.pt")
