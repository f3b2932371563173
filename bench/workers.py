"""Aggregate training throughput of several worker processes sharing one machine: the cores
(CPU) or one GPU (PBT's --workers-per-gpu), as bench/run.py reports it."""

from __future__ import annotations

import multiprocessing as mp
import time

import torch

from bench.cases import CASES, build_model, make_batch, make_step, sync


def _throughput_worker(device: str, threads: int, steps: int, barrier, queue) -> None:
    from autolfads.config import TrainConfig
    from autolfads.training.parallel import Shards
    from autolfads.training.process import setup_process

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    shards = Shards(setup_process(TrainConfig(device=device, threads=threads)))
    case = CASES["lorenz"]
    model = build_model(case, device)
    x, counts, lf = make_batch(case, device)
    step, _ = make_step(model, case, shards=shards)
    for _ in range(2):
        step(x, counts, lf)
    sync(device)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, counts, lf)
    sync(device)
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    queue.put((time.perf_counter() - t0, steps * case.batch, mem))


def worker_throughput(n_workers: int, cores: int, steps: int, device: str = "cpu") -> dict:
    """Aggregate Lorenz training throughput of n worker processes with cores // n threads each
    (on CUDA: all on the one GPU, as PBT's workers per GPU), and each one's peak GPU memory."""
    ctx = mp.get_context("spawn")
    threads = max(1, cores // n_workers)
    barrier, queue = ctx.Barrier(n_workers), ctx.Queue()
    procs = [ctx.Process(target=_throughput_worker, args=(device, threads, steps, barrier, queue))
             for _ in range(n_workers)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[0] for r in results)
    trials = sum(r[1] for r in results)
    out = {"workers": n_workers, "threads_per_worker": threads, "steps_per_worker": steps,
           "wall_s": wall, "trials_per_s": trials / wall}
    if device.startswith("cuda"):
        out["gpu_mem_mb_per_worker"] = max(r[2] for r in results)
    return out
