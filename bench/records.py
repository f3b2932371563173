"""bench/results.json and results.md: merging a run's records into the file's and the table."""

from __future__ import annotations

# The public PyTorch LFADS cannot be installed here (not on the package index these machines
# reach), so its step time is a constant, not a same-run figure; results say so.
BASELINE_STEP_S = {"lorenz": 0.40, "mc_maze": 0.67}
BASELINE_NOTE = ("constant, not measured in this run: a public PyTorch LFADS's step on 2 CPU "
                 "cores of this machine type, measured 2026-11-23 (issue 4); measured again "
                 "later (issue 13) its MC_Maze step took 0.55-0.69 s")


def markdown(records: list[dict]) -> str:
    head = ("| case | device | threads | batch | step s | trials/s | GFLOP/step | GFLOP/s | "
            "matmul peak GFLOP/s | % of peak | plain step s | vs plain | vs baseline (constant) | "
            "native cells step s | vs default | sampling s | plain sampling s | vs plain | "
            "sequential sampling s | vs sequential | peak RSS MB | GPU MB | other load |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        base = r.get("speedup_vs_baseline")
        lines.append(
            f"| {r['case']} | {r['device']} | {r.get('threads') or '-'} | {r['batch']} | "
            f"{r['step_s']:.4f} | {r['trials_per_s']:.0f} | {r['flops_per_step'] / 1e9:.2f} | "
            f"{r['gflops_achieved']:.1f} | {r['gflops_peak_measured']:.1f} | "
            f"{100 * r['fraction_of_peak']:.0f}% | {r['reference_step_s']:.3f} | "
            f"{r['speedup_vs_reference']:.2f}x | {f'{base:.2f}x' if base else '-'} | "
            f"{_get(r, 'native_step_s', '.4f')} | {_get(r, 'native_speedup', '.2f')}x | "
            f"{r['sampling_s']:.3f} | {_get(r, 'sampling_plain_s', '.3f')} | "
            f"{_get(r, 'sampling_speedup_vs_plain', '.2f')}x | {r['sampling_sequential_s']:.3f} | "
            f"{r['sampling_speedup']:.2f}x | {r['peak_rss_mb']:.0f} | "
            f"{_get(r, 'cuda_peak_mem_mb', '.0f')} | "
            f"{r['background_load_cores']:.2f} |")
    workers = [(r, w) for r in records for w in r.get("workers_scaling", [])]
    if workers:
        lines += ["", "| case | device | workers | threads/worker | aggregate trials/s | "
                  "vs 1 worker | GPU MB/worker (allocated / reserved) |",
                  "|---|---|---|---|---|---|---|"]
        for r, w in workers:
            one = r["workers_scaling"][0]["trials_per_s"]
            lines.append(f"| {r['case']} | {r['device']} | {w['workers']} | "
                         f"{w['threads_per_worker']} | {w['trials_per_s']:.0f} | "
                         f"{w['trials_per_s'] / one:.2f}x | "
                         f"{_get(w, 'gpu_mem_mb_per_worker', '.0f')} / "
                         f"{_get(w, 'gpu_reserved_mb_per_worker', '.0f')} |")
    lines += ["", "Every figure but the baseline is measured in the same run as what it is "
              "compared with. step: forward + backward + Adam, median after warm-up; plain "
              "step: the same model and step written the plain PyTorch way (cases.py: "
              "make_plain_step); native cells: the same step with the GRU cell as compiled kernels "
              "(train.native_cells), alternated with the default loops, vs default: their ratio "
              "in that alternation; GFLOP/step: the matmul FLOPs the step needs (forward, weight "
              "gradients, input gradients of all but the encoders' data projections); % of peak: "
              "achieved / measured matmul GFLOP/s (largest of the shapes in matmul_gflops); vs "
              f"baseline: {BASELINE_NOTE} (0.40 s Lorenz, 0.67 s MC_Maze); sampling: 50 posterior "
              "samples of the batch's trials, each trial encoded once, vs plain: the same (fused) "
              "model run whole on every sample copy, vs sequential: one pass per sample; other "
              "load: cores other "
              "processes kept busy during the step timing; GPU MB: the case's peak GPU memory "
              "(all in full FP32: TF32 off)."]
    return "\n".join(lines) + "\n"


def _get(r: dict, key: str, fmt: str) -> str:
    """A figure of a record, or '-' in records from before it was measured."""
    return "-" if r.get(key) is None else format(r[key], fmt)


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    keys = {(r["case"], r["device"]) for r in new}
    return [r for r in old if (r.get("case"), r.get("device")) not in keys] + new
