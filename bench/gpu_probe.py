"""Where a GPU training step's time goes, and how many rows a posterior-sampling pass should
take on a GPU: two questions bench/run.py does not answer, for one call on a lent GPU.

    python -m bench.gpu_probe [--device cuda] [--out DIR] [--parts steps,sampling]

1. Each case's step under torch.profiler: wall time, the GPU's busy time (the sum of its
   kernels' time) and the number of kernel launches per step. A step whose GPU is busy for a
   small share of its wall time is bound by launching kernels, not by arithmetic.
2. sample_and_average over 2000 trials, 50 samples, at 1024 (the CPU's), 4096, 16384 and
   65536 rows a pass and at the default (rows_per_pass), with the peak GPU memory of each.
Prints a table; writes gpu_probe.json to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bench.cases import CASES, build_model, make_batch, make_step, sync


def step_profile(name: str, device: str, steps: int = 5) -> dict:
    from torch.profiler import ProfilerActivity, profile

    case = CASES[name]
    model = build_model(case, device)
    x, counts, lf = make_batch(case, device)
    step, _ = make_step(model, case)
    for _ in range(3):
        step(x, counts, lf)
    sync(device)
    gpu = device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x, counts, lf)
        sync(device)
        wall = (time.perf_counter() - t0) / steps
    kernels = [e for e in prof.events() if gpu and e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(getattr(e, "device_time_total", 0.0) for e in kernels)
    return {"case": name, "step_s_profiled": wall, "kernels_per_step": len(kernels) / steps,
            "gpu_busy_s_per_step": busy_us * 1e-6 / steps,
            "gpu_busy_share": busy_us * 1e-6 / steps / wall,
            "top_ops": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)}


def sampling_sizes(name: str, device: str, sizes=(1024, 4096, 16384, 65536),
                   trials: int = 2000) -> dict:
    """Sampling time and peak GPU memory at each pass size and at the default (rows_per_pass)."""
    from autolfads.training.sampling import rows_per_pass, sample_and_average

    case = CASES[name]
    model = build_model(case, device)
    x, _, _ = make_batch(case, device)
    data = x.repeat(-(-trials // x.shape[0]), 1, 1)[:trials]
    gpu = device.startswith("cuda")
    default = rows_per_pass(data.device, case.t_recon)
    out, peak_mb = {}, {}
    for rows in (*sizes, default):
        times = []
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        for rep in range(3):  # the first is a warm-up
            torch.manual_seed(0)
            sync(device)
            t0 = time.perf_counter()
            sample_and_average(model, data, n_samples=50, max_batch=rows)
            sync(device)
            if rep:
                times.append(time.perf_counter() - t0)
        out[rows] = statistics.median(times)
        peak_mb[rows] = torch.cuda.max_memory_allocated() / 2**20 if gpu else None
    return {"case": name, "trials": trials, "default_rows": default,
            "sampling_s_by_rows_per_pass": out, "peak_mb_by_rows_per_pass": peak_mb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_probe")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=".")
    ap.add_argument("--parts", default="steps,sampling", help="steps, sampling or both")
    a = ap.parse_args(argv)
    parts = a.parts.split(",")
    if a.device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    record = {"device": a.device, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None,
              "steps": [step_profile(n, a.device) for n in CASES if "steps" in parts],
              "sampling": [sampling_sizes(n, a.device) for n in CASES if "sampling" in parts]}
    for s in record["steps"]:
        print(f"{s['case']}: step {s['step_s_profiled']:.4f} s, {s['kernels_per_step']:.0f} "
              f"kernels, GPU busy {s['gpu_busy_s_per_step']:.4f} s ({s['gpu_busy_share']:.0%})")
        print(s["top_ops"])
    for s in record["sampling"]:
        peaks = s["peak_mb_by_rows_per_pass"]
        by = ", ".join(f"{r} rows {t:.3f} s ({peaks[r] or 0:.0f} MB)"
                       for r, t in s["sampling_s_by_rows_per_pass"].items())
        print(f"{s['case']} sampling {s['trials']} trials x 50 (default {s['default_rows']} "
              f"rows): {by}")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_probe.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
