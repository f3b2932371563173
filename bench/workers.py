"""Aggregate training throughput of several worker processes sharing one machine: the cores
(CPU) or one GPU (PBT's --workers-per-gpu), as bench/run.py reports it."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time

import torch

from bench.cases import CASES, build_model, make_batch, make_step, sync


def collect(queue, procs: list, timeout_s: float = 1800.0) -> list:
    """One result from each process: ("ok", value) or ("error", text) as they put it. A process
    that died without putting one (a segfault, a CUDA abort, out of memory) is an error here
    instead of a parent that waits forever."""
    results, deadline = [], time.monotonic() + timeout_s
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=2.0))
        except queue_mod.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                why = (f"a benchmark process died (exit code {dead[0].exitcode})" if dead
                       else f"no result after {timeout_s:.0f} s")
                raise RuntimeError(why) from None
    for p in procs:
        p.join()
    errors = [v for status, v in results if status != "ok"]
    if errors:
        raise RuntimeError(errors[0])
    return [v for _, v in results]


def _throughput_worker(device: str, threads: int, steps: int, barrier, queue) -> None:
    try:
        queue.put(("ok", _throughput(device, threads, steps, barrier)))
    except BaseException as e:  # report, and free the others from the barrier
        barrier.abort()
        queue.put(("error", f"{type(e).__name__}: {e}"))


def _throughput(device: str, threads: int, steps: int, barrier) -> tuple:
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
    barrier.wait(timeout=600)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, counts, lf)
    sync(device)
    wall = time.perf_counter() - t0
    # allocated: the tensors at their peak; reserved: what the caching allocator held for them
    # (what other workers cannot use). Neither counts the CUDA context (~0.3-0.5 GB a process):
    # device_check.sh samples nvidia-smi for what each process holds in all.
    mem = ((torch.cuda.max_memory_allocated() / 2**20, torch.cuda.max_memory_reserved() / 2**20)
           if device.startswith("cuda") else (None, None))
    return wall, steps * case.batch, *mem


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
    results = collect(queue, procs)
    wall = max(r[0] for r in results)
    trials = sum(r[1] for r in results)
    out = {"workers": n_workers, "threads_per_worker": threads, "steps_per_worker": steps,
           "wall_s": wall, "trials_per_s": trials / wall}
    if device.startswith("cuda"):
        out["gpu_mem_mb_per_worker"] = max(r[2] for r in results)
        out["gpu_reserved_mb_per_worker"] = max(r[3] for r in results)
    return out
