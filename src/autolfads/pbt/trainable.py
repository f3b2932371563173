"""One PBT worker: an LFADS Trainer that reports once per generation to Ray Tune.

Ray pauses every worker at a generation boundary and later restarts this function from a
checkpoint: its own (continue exactly, RNG included) or, after an exploit, another worker's
(weights and optimizer state copied, new hyperparameters applied, fresh random stream).

A worker given a GPU checks that it can use it before anything else: on a node with a broken
driver or a CPU-only torch, training on the CPU instead would be silently many times slower, and
restarting would fail the same way forever, so it raises `GPUMissing`, which ends the run.
"""

from __future__ import annotations

import io
import math
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import ray
import torch
from ray import tune

from autolfads.config import Config
from autolfads.data.dataset import Dataset
from autolfads.pbt.scheduler import GENERATION, SCORE
from autolfads.rundir.layout import worker_checkpoint
from autolfads.rundir.location import get_bytes, put_bytes
from autolfads.training.loop import Trainer
from autolfads.training.process import missing_kernels, setup_process

CHECKPOINT = "checkpoint.pt"
# A restarted worker never waits longer than this, whatever the driver's clock says.
MAX_RESTART_DELAY_S = 60.0


class GPUMissing(RuntimeError):
    """A worker that was given a GPU sees none. The message is one line that names the node; the
    runner recognises this class in Ray's error text and stops the run instead of restarting."""


def node_name() -> str:
    """This machine as people and Ray know it: "hostname (node IP)"."""
    try:
        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001  (outside Ray: the hostname alone still names the node)
        ip = "?"
    return f"{socket.gethostname()} ({ip})"


def require_gpu(worker: int, gpu_ids: Sequence, node: str) -> None:
    """Raise GPUMissing unless torch can use CUDA here, Ray assigned this worker a GPU, and this
    torch has kernels for it."""
    if not torch.cuda.is_available():
        why = ("CUDA not available: this torch is a CPU-only build" if torch.version.cuda is None
               else "CUDA not available: the NVIDIA driver is missing or not working")
    elif not gpu_ids:
        why = "Ray assigned it no GPU: was the node started with its GPUs (ray start --num-gpus)?"
    else:
        no_kernels = missing_kernels()
        if no_kernels is None:
            return
        raise GPUMissing(f"worker {worker} on node {node} cannot use its GPU: {no_kernels}")
    raise GPUMissing(f"worker {worker} on node {node} was given a GPU but sees none ({why}); "
                     "check nvidia-smi there")


def worker_device(train_device: str, workers_per_gpu: int) -> str:
    """The device a PBT worker trains on. A GPU worker: the GPU Ray gave it, never a CPU
    fallback. "cuda" is that one, since Ray makes only it visible (CUDA_VISIBLE_DEVICES), so an
    explicit cuda:N means it too (N >= 1 would not exist there). A CPU worker: the CPU, also
    for "auto" on a node with GPUs: Ray (2.60) no longer hides GPUs from trials that asked for
    none, and a worker there would use GPU memory Ray does not count. An explicit "cpu" wins."""
    if workers_per_gpu > 0:
        return "cuda" if train_device == "auto" or train_device.startswith("cuda") else train_device
    return "cpu" if train_device == "auto" else train_device


def lfads_worker(config: dict, dataset: Dataset, base: dict, run_dir: str) -> None:
    member = config["member"]
    worker = int(member["worker"])
    cfg = Config.model_validate(base)
    if cfg.pbt.workers_per_gpu > 0:
        require_gpu(worker, ray.get_gpu_ids(), node_name())
    cfg.train.device = worker_device(cfg.train.device, cfg.pbt.workers_per_gpu)
    cfg.train.seed = cfg.train.seed + 1000 * worker  # independent initial weights per worker
    cfg.train.threads = max(1, int(cfg.pbt.cpus_per_worker))
    epochs = cfg.pbt.epochs_per_generation
    # After a failure the driver sets when this worker may train again (callbacks.py: back-off),
    # so that a worker whose node keeps failing does not spin.
    wait = min(MAX_RESTART_DELAY_S, float(member.get("not_before", 0.0)) - time.time())
    if wait > 0:
        time.sleep(wait)
    trainer = Trainer(cfg, dataset, shard_threads=setup_process(cfg.train))

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
