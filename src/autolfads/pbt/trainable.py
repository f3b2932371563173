"""One PBT worker: an LFADS Trainer that reports once per generation to Ray Tune.

Ray pauses every worker at a generation boundary and later restarts this function from a
checkpoint: its own (continue exactly, RNG included) or, after an exploit, another worker's
(weights and optimizer state copied, new hyperparameters applied, fresh random stream).
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import torch
from ray import tune

from autolfads.config import Config
from autolfads.data.dataset import Dataset
from autolfads.pbt.scheduler import GENERATION, SCORE
from autolfads.storage import get_bytes, join, put_bytes
from autolfads.training.loop import Trainer

CHECKPOINT = "checkpoint.pt"


def worker_checkpoint(run: str | Path, worker: int, generation: int) -> str:
    """Where a worker's end-of-generation state is kept in the run (a path or a bucket URI), for
    resume and best_model/; Ray keeps its own copies for exploiting."""
    return join(run, "pbt", "checkpoints", f"w{worker:02d}", f"gen{generation:03d}.pt")


def lfads_worker(config: dict, dataset: Dataset, base: dict, run_dir: str) -> None:
    member = config["member"]
    worker = int(member["worker"])
    cfg = Config.model_validate(base)
    cfg.train.seed = cfg.train.seed + 1000 * worker  # independent initial weights per worker
    cfg.train.threads = max(1, int(cfg.pbt.cpus_per_worker))
    epochs = cfg.pbt.epochs_per_generation
    trainer = Trainer(cfg, dataset)

    state = _starting_checkpoint(member)
    if state is not None:
        own = state.get("worker") == worker
        trainer.load_checkpoint(state, restore_rng=own)
        if not own:  # exploited: diverge from the source's random stream
            torch.manual_seed(cfg.train.seed + 7 * trainer.state.epoch)
    # After an exploit the new hyperparameters win over the checkpoint's (the lr included).
    trainer.set_hparams(member["hp"])

    while True:
        trainer.fit(epochs, early_stop=False)
        generation = trainer.state.epoch // epochs
        score = trainer.state.smoothed
        last = trainer.state.history[-1]
        with tempfile.TemporaryDirectory() as d:
            trainer.save(Path(d) / CHECKPOINT, worker=worker)
            # Written by the worker itself: on a cluster it may be another machine than the
            # driver's, so the run location must be a bucket or a shared filesystem.
            put_bytes(worker_checkpoint(run_dir, worker, generation),
                      (Path(d) / CHECKPOINT).read_bytes())
            tune.report(
                {SCORE: score if math.isfinite(score) else math.nan, GENERATION: generation,
                 "worker": worker, "epoch": trainer.state.epoch,
                 "valid_recon": last["valid_recon"], "train_recon": last["train_recon"]},
                checkpoint=tune.Checkpoint.from_directory(d),
            )


def _starting_checkpoint(member: dict) -> dict | None:
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            return torch.load(Path(d) / CHECKPOINT, map_location="cpu", weights_only=True)
    if member.get("init_checkpoint"):  # a resumed run starts from the run directory's copies
        return torch.load(io.BytesIO(get_bytes(member["init_checkpoint"])), map_location="cpu",
                          weights_only=True)
    return None
