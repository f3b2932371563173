"""LFADS training-step and posterior-sampling benchmark (issue 4).

    python -m bench.run [--device cpu|cuda] [--quick] [--cases lorenz,mc_maze] [--threads N]

For each case (bench/cases.py) it times, in a fresh process (so peak RSS is the case's own):
  - the training step (forward + backward + Adam, as the Trainer takes it): median of several
    after warm-up, and as the reference the same model and step written the plain PyTorch way
    (cases.py: make_plain_step);
  - posterior sample-and-average of the batch's trials: all samples in one batched pass with
    each trial encoded once (training/sampling.py), against the same with the whole model run
    on every copy (its plain form) and against one pass per sample;
  - where a C++ compiler is present, the step with the GRU cell as compiled kernels
    (train.native_cells), alternated with the default loops;
and reports trials/s, the matmul FLOPs a step needs (counted from the sizes), the achieved GFLOP/s
against the machine's measured matmul GFLOP/s, and peak RSS. On CPU it also measures the
aggregate throughput of 1 and 2 worker processes sharing the cores, each with cores // workers
torch threads (what the PBT trainable gives each worker); on a GPU, of 1, 3 and 8 worker
processes sharing it (--workers-per-gpu), with each one's peak GPU memory.

Results: bench/results.json (a list of records, one per case and device; records of other
devices already in the file are kept) and bench/results.md, a table that is also printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from autolfads.rundir.location import atomic_write
from bench.cases import (
    CASES,
    Case,
    build_model,
    forward_flops,
    make_batch,
    make_plain_step,
    make_step,
    step_flops,
    sync,
)
from bench.records import BASELINE_NOTE, BASELINE_STEP_S, markdown, merge
from bench.workers import collect, worker_throughput

HERE = Path(__file__).resolve().parent
N_SAMPLES = 50


# -- small utilities ---------------------------------------------------------------------------

def timed(fn, device: str, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


class BackgroundLoad:
    """CPU time other processes used during a measurement, in cores (0 = machine was ours)."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_s(), time.process_time()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        other = (_busy_s() - self.busy0) - (time.process_time() - self.own0)
        self.cores = max(0.0, other / wall) if wall > 0 else 0.0


def _busy_s() -> float:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    v = [int(f) for f in fields]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# -- matmul reference throughput ---------------------------------------------------------------

def matmul_gflops(m: int, k: int, n: int, device: str, min_time: float = 0.3) -> float:
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    out = torch.empty(m, n, device=device)
    torch.mm(a, b, out=out)
    sync(device)
    reps, best = 1, float("inf")
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        sync(device)
        dt = time.perf_counter() - t0
        if dt >= min_time / 3:
            best = min(best, dt / reps)
            if dt >= min_time:
                break
        reps *= 2
    return 2.0 * m * k * n / best / 1e9


def matmul_shapes(case: Case) -> dict[str, tuple[int, int, int]]:
    cfg = case.model
    B, H, G = case.batch, cfg["con_dim"], cfg["gen_dim"]
    return {
        "recurrent (B x H) @ (H x 3H)": (B, H, 3 * H),
        "generator (B x G) @ (G x 3G)": (B, G, 3 * G),
        "input projection (B*T x N) @ (N x 3H)": (B * case.t_enc, case.n_in, 3 * H),
    }


# -- one case, in its own process --------------------------------------------------------------

def measure_case(name: str, device: str, threads: int, quick: bool) -> dict:
    from autolfads.config import TrainConfig
    from autolfads.training.parallel import Shards
    from autolfads.training.process import setup_process
    from autolfads.training.sampling import sample_and_average

    if device.startswith("cuda"):  # cuda:N: synchronize and the memory figures mean that one
        torch.cuda.set_device(torch.device(device))
        # Full FP32 everywhere: cuDNN would run the plain form's nn.GRU encoders in TF32 by
        # default while the fused recurrences' matmuls are FP32, and the ratio would compare
        # different precisions.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    n = setup_process(TrainConfig(device=device, threads=threads))  # as a training process
    shards = Shards(n)
    case = CASES[name]
    warm, reps = (2, 5) if quick else (3, 10)
    ref_reps = 2 if quick else 3
    n_samples = 20 if quick else N_SAMPLES

    model = build_model(case, device)
    x, counts, lf = make_batch(case, device)
    step, _ = make_step(model, case, shards=shards)
    with BackgroundLoad() as load:
        step_times = timed(lambda: step(x, counts, lf), device, warm, reps)
    rss_train = peak_rss_mb()
    step_s = statistics.median(step_times)
    cuda_step_mb = torch.cuda.max_memory_allocated() / 2**20 if device != "cpu" else None
    native = native_step(lambda: step(x, counts, lf), device, warm, reps)

    # Posterior sampling of the batch's trials: one batched pass vs one pass per sample.
    def sequential():
        outs = [sample_and_average(model, x, n_samples=1, shards=shards)
                for _ in range(n_samples)]
        return {k: sum(o[k] for o in outs) / n_samples for k in outs[0]}

    def batched(encode_once: bool):
        return lambda: sample_and_average(model, x, n_samples=n_samples, shards=shards,
                                          encode_once=encode_once)

    # Each side of every ratio in this run: the fast form, then the plain one, alternated.
    batched_s, plain_s = [], []
    for _ in range(1 if quick else 2):
        batched_s += timed(batched(True), device, 1, 1)
        plain_s += timed(batched(False), device, 1, 1)
    batched_s, plain_s = min(batched_s), min(plain_s)
    seq_s = min(timed(sequential, device, 0 if quick else 1, 1))
    rss_sampling = peak_rss_mb()

    # The reference: the same model and step written the plain PyTorch way (cases.py), on
    # torch's own intra-op threads.
    ref_model = build_model(case, device)
    ref_step = make_plain_step(ref_model, case)
    intra = torch.get_num_threads()
    torch.set_num_threads(threads if device == "cpu" else intra)
    try:
        ref_s = statistics.median(timed(lambda: ref_step(x, counts, lf), device, 1, ref_reps))
    finally:
        torch.set_num_threads(intra)

    flops = step_flops(case)
    rec = {
        "case": name,
        "device": device_name(device),
        "threads": n if device == "cpu" else None,
        "batch": case.batch,
        "step_s": step_s,
        "step_s_min": min(step_times),
        "step_times_s": step_times,
        "trials_per_s": case.batch / step_s,
        "flops_per_step": flops,
        "forward_flops_by_part": forward_flops(case),
        "gflops_achieved": flops / step_s / 1e9,
        "reference_step_s": ref_s,
        "speedup_vs_reference": ref_s / step_s,
        "reference": "this model, plain PyTorch form and step (bench/cases.py: make_plain_step)"
                     ", measured in this run",
        "baseline_step_s": BASELINE_STEP_S[name] if device == "cpu" else None,
        "baseline": BASELINE_NOTE if device == "cpu" else None,
        "speedup_vs_baseline": BASELINE_STEP_S[name] / step_s if device == "cpu" else None,
        "sampling_s": batched_s,
        "sampling_plain_s": plain_s,
        "sampling_speedup_vs_plain": plain_s / batched_s,
        "sampling_sequential_s": seq_s,
        "sampling_speedup": seq_s / batched_s,
        "sampling_n_samples": n_samples,
        "sampling_trials": case.batch,
        "peak_rss_mb": rss_train,
        "peak_rss_sampling_mb": rss_sampling,
        "background_load_cores": round(load.cores, 2),
        "quick": quick,
        "tf32": False if device.startswith("cuda") else None,
    }
    rec.update(native)
    if device.startswith("cuda"):  # the step's own peak (measured first), then the whole case's
        rec["cuda_step_peak_mem_mb"] = cuda_step_mb
        rec["cuda_peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return rec


def native_step(step, device: str, warm: int, reps: int) -> dict:
    """The step with the GRU cell as compiled kernels (train.native_cells, model/fused/native),
    timed alternately with the default loops in this run; {} where they cannot be built."""
    from autolfads.model.fused import loops

    impl, why = loops.native_loops() if device == "cpu" else (None, "CPU only")
    if impl is None:
        return {"native_unavailable": why}
    default, times = loops.active, {"default": [], "native": []}
    try:
        for _ in range(warm + reps):
            for key, chosen in (("default", default), ("native", impl)):
                loops.active = chosen
                times[key] += timed(step, device, 0, 1)
    finally:
        loops.active = default
    d, n = (statistics.median(times[k][warm:]) for k in ("default", "native"))
    return {"native_step_s": n, "native_default_step_s": d, "native_speedup": d / n}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def _case_worker(args, queue) -> None:
    try:
        queue.put(("ok", measure_case(*args)))
    except BaseException as e:  # report, do not hang the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def in_subprocess(fn, args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=fn, args=(args, queue))
    p.start()
    return collect(queue, [p])[0]


# -- report ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and samples")
    ap.add_argument("--cases", default="lorenz,mc_maze", help="comma-separated case names")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads on CPU (default: all cores)")
    ap.add_argument("--no-workers", action="store_true",
                    help="skip the 1 vs 2 worker-process throughput measurement")
    ap.add_argument("--out", default=str(HERE), help="folder for results.json / results.md")
    a = ap.parse_args(argv)

    device = a.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is available to torch", file=sys.stderr)
        return 2
    if device == "cuda":  # an index, for torch.cuda.set_device and the memory figures
        device = "cuda:0"
    names = [n.strip() for n in a.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"error: --cases: unknown case {unknown[0]!r} (choose from {', '.join(CASES)})",
              file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    threads = a.threads or cores
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    records = []
    for name in names:
        print(f"[bench] {name} on {device} ...", flush=True)
        rec = in_subprocess(_case_worker, (name, device, threads, a.quick))
        # Small shapes like the step's, per core (1 thread); a large square on all cores.
        torch.set_num_threads(1)
        on = "1 core" if device == "cpu" else device_name(device)
        measured = {f"{label}, {on}": matmul_gflops(*s, device)
                    for label, s in matmul_shapes(CASES[name]).items()}
        big = 4096 if device.startswith("cuda") else 2048
        if device == "cpu" and cores > 1:  # the all-cores figure over this: what cores add
            measured[f"square {big}, 1 core"] = matmul_gflops(big, big, big, device)
        torch.set_num_threads(cores)
        on = f"{cores} cores" if device == "cpu" else device_name(device)
        measured[f"square {big}, {on}"] = matmul_gflops(big, big, big, device)
        rec["matmul_gflops"] = {k: round(v, 1) for k, v in measured.items()}
        rec["gflops_peak_measured"] = max(measured.values())
        rec["fraction_of_peak"] = rec["gflops_achieved"] / rec["gflops_peak_measured"]
        records.append(rec)
        print(f"[bench]   step {rec['step_s']:.4f} s, {rec['trials_per_s']:.0f} trials/s, "
              f"reference {rec['reference_step_s']:.3f} s", flush=True)

    # Workers sharing the machine: on CPU 1 and 2 processes splitting the cores; on a GPU 1, 3
    # and 8 processes on the one GPU (PBT's --workers-per-gpu).
    counts = (1, 2) if device == "cpu" else (1, 3, 8)
    if not a.no_workers and "lorenz" in names and (cores >= 2 or device != "cpu"):
        steps = 4 if a.quick else 8
        scaling = []
        for n in counts:
            print(f"[bench] lorenz throughput with {n} worker process(es) ...", flush=True)
            scaling.append(worker_throughput(n, cores, steps, device))
        next(r for r in records if r["case"] == "lorenz")["workers_scaling"] = scaling

    for r in records:
        r["torch_version"] = torch.__version__
        r["bench_wall_s"] = round(time.perf_counter() - t_start, 1)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    old = []
    if json_path.exists():
        try:
            old = json.loads(json_path.read_text())
        except (OSError, ValueError):
            old = []
    all_records = merge(old if isinstance(old, list) else [], copy.deepcopy(records))
    table = markdown(all_records)
    for path, text in ((json_path, json.dumps(all_records, indent=1) + "\n"),
                       (md_path, "# LFADS benchmark (python -m bench.run)\n\n" + table)):
        atomic_write(path, lambda tmp, text=text: tmp.write_text(text))
    print(table)
    print(f"[bench] wrote {json_path} and {md_path} in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
