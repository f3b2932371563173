"""Posterior sample-and-average: the LFADS output.

For each trial, draw N samples of z0 and u_{1:T} from the posterior (dropout off) and average the
rates, factors and inferred inputs over samples. All N samples of a chunk of trials run as one
batch of size chunk * N, so the cost is a few large passes instead of N small ones.

`encode_once` (the default) does each deterministic part once per trial: in eval mode the
encoders and the projection of the controller inputs do not depend on the draws, so each trial
is encoded and projected once and only z0, the controller + generator loop and the readout run
for every sample. Off, the whole model runs on every copy: the plain form, which the tests and
`make bench` check it against (same outputs for the same draws).
"""

from __future__ import annotations

import numpy as np
import torch

from autolfads.model import LFADS
from autolfads.model.noise import draw_noise
from autolfads.training.parallel import Shards

KEYS = ("rates", "factors", "inferred_inputs", "ic_mean")
ENCODE_BLOCK = 16  # trials are encoded this many passes' worth at a time,
MAX_ENCODED = 1024  # but no more trials than this (their controller inputs are kept meanwhile)
CPU_ROWS = 1024  # rows per pass on a CPU: larger ones fall out of cache and run slower (bench)
# On a GPU a pass is a few thousand small kernels whatever its size, so larger passes are faster:
# 2000 trials x 50 samples took 2.3 s at 1024 rows a pass, 0.21 s at 16384 (an H200, Lorenz
# size; bench/gpu_probe.py). Rows x bins is bounded so that a pass stays a few GB at any trial
# length; a pass that runs out of GPU memory is retried at a quarter of the size.
GPU_ROW_BINS = 2**20
GPU_MAX_ROWS = 65536  # the largest pass measured (short trials would ask for more)


def rows_per_pass(device: torch.device, n_bins: int) -> int:
    if device.type == "cpu":
        return CPU_ROWS
    return min(GPU_MAX_ROWS, max(CPU_ROWS, GPU_ROW_BINS // max(1, n_bins)))


def sample_and_average(
    model: LFADS,
    data: torch.Tensor,
    ext_input: torch.Tensor | None = None,
    n_samples: int = 50,
    max_batch: int | None = None,  # rows per pass (default: rows_per_pass)
    shards: Shards | None = None,
    encode_once: bool = True,
) -> dict[str, np.ndarray]:
    """data: (B, T, N) encoder input (model.obs.encoder_input of the data) -> {'rates': (B,T,N)
    the observation model's mean in the data's units, 'factors': (B,T,F), 'inferred_inputs':
    (B,T,U), 'ic_mean': (B, ic_dim)} averaged over `n_samples` posterior samples. `shards`
    spreads each pass over threads (training/parallel.py); the draws are made for the whole pass
    first."""
    rows = max_batch or rows_per_pass(data.device, model.recon_seq_len or data.shape[1])
    while True:
        try:
            return _passes(model, data, ext_input, n_samples, rows, shards, encode_once)
        except torch.cuda.OutOfMemoryError:
            if max_batch is not None or rows <= CPU_ROWS:
                raise
            torch.cuda.empty_cache()
            rows = max(CPU_ROWS, rows // 4)


@torch.no_grad()
def _passes(model: LFADS, data: torch.Tensor, ext_input: torch.Tensor | None, n_samples: int,
            max_batch: int, shards: Shards | None, encode_once: bool) -> dict[str, np.ndarray]:
    model.eval()
    shards = shards or Shards(1)
    B, T_enc = data.shape[:2]
    T = model.recon_seq_len or T_enc
    S = n_samples
    chunk = max(1, max_batch // S)
    block = chunk * max(1, min(ENCODE_BLOCK, MAX_ENCODED // chunk))  # bounded memory
    parts: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
    for b0 in range(0, B, block):
        # Dropout is off, so the encoders' outputs do not depend on the draws: each trial is
        # encoded once, a block of trials at a time (a few large passes, bounded memory).
        ic_mean, ic_logvar, ci = _encode(model, data[b0 : b0 + block], shards)
        parts["ic_mean"].append(ic_mean.cpu().numpy())
        for c0 in range(0, min(block, B - b0), chunk):
            x = data[b0 + c0 : b0 + c0 + chunk]
            b = x.shape[0]
            enc = (ic_mean[c0 : c0 + b], ic_logvar[c0 : c0 + b],
                   None if ci is None else ci[:, c0 : c0 + b])
            es = (None if ext_input is None
                  else ext_input[b0 + c0 : b0 + c0 + b].repeat(S, 1, 1))
            xs = None if encode_once else x.repeat(S, 1, 1)
            # Sample s of trial i is row s * b + i of the pass; the draws are those of one pass
            # over its S * b rows, as when every copy was encoded (tests/test_train.py).
            nz = draw_noise(model, b * S, T_enc, x, sample=True)

            def run(item: tuple[slice, int, int], enc=enc, es=es, nz=nz, xs=xs):
                rows, lo, hi = item  # k whole samples of trials lo..hi-1 (_shard_items)
                k = (rows.stop - rows.start) // (hi - lo)
                ext = None if es is None else es[rows]
                if xs is not None:  # the plain form
                    out = model(xs[rows], ext, noise=nz.select(rows))
                else:  # the trials' controller inputs serve all k samples (lfads.generate)
                    ci = None if enc[2] is None else enc[2][:, lo:hi]
                    out = model.generate((enc[0][lo:hi].repeat(k, 1),
                                          enc[1][lo:hi].repeat(k, 1), ci), ext, nz.select(rows), T)

                def total(t: torch.Tensor) -> torch.Tensor:  # over this shard's samples
                    return t.reshape(k, hi - lo, *t.shape[1:]).sum(0)

                return (total(model.obs.mean(out.obs_params)), total(out.factors),
                        total(out.inferred_inputs))

            items = _shard_items(shards, b, S)
            results = shards.map(run, items)
            for j, key in enumerate(KEYS[:3]):  # ic_mean: above
                acc = results[0][j].new_zeros(b, *results[0][j].shape[1:])
                for (_, lo, hi), sums in zip(items, results, strict=True):
                    acc[lo:hi] += sums[j]
                parts[key].append((acc / S).cpu().numpy())
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def _encode(model: LFADS, x: torch.Tensor, shards: Shards
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """model.encode of trials x (eval mode: no draws), in shards: ic mean and log variance
    (B, ic_dim) and the controller inputs (T_enc, B, D) or None."""
    def one(s: slice):
        return model.encode(x[s], draw_noise(model, s.stop - s.start, x.shape[1], x, False))

    outs = list(zip(*shards.map(one, shards.split(x.shape[0])), strict=True))
    ci = None if outs[2][0] is None else torch.cat(outs[2], dim=1)
    return torch.cat(outs[0]), torch.cat(outs[1]), ci


def _shard_items(shards: Shards, b: int, n_samples: int) -> list[tuple[slice, int, int]]:
    """How a pass of n_samples copies of b trials (sample s of trial i in row s * b + i) is
    shared among the threads: (rows, first trial, end trial) per item. With at least as many
    samples as shards, each item holds whole samples of all b trials; with fewer, each sample's
    trials are split as evenly as the threads allow (n // n_samples parts per sample)."""
    n = len(shards.split(b * n_samples))
    if n_samples >= n:
        return [(slice(lo * b, hi * b), 0, b) for lo, hi in _even_parts(n_samples, n)]
    per = min(b, n // n_samples)  # trial ranges per sample
    return [(slice(s * b + lo, s * b + hi), lo, hi) for s in range(n_samples)
            for lo, hi in _even_parts(b, per)]


def _even_parts(total: int, k: int) -> list[tuple[int, int]]:
    """0..total in k near-equal contiguous (start, end) ranges."""
    edges = [round(i * total / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def posterior_outputs(trainer, n_samples: int | None = None) -> dict[str, np.ndarray]:
    """Sample-and-average every split of a trainer's data (train, valid, test when there is one);
    keys train_rates, valid_factors, test_rates, ..."""
    n = n_samples or trainer.cfg.train.n_samples
    post: dict[str, np.ndarray] = {}
    splits = [("train", trainer.train_in, trainer.train_ext),
              ("valid", trainer.valid_in, trainer.valid_ext)]
    if trainer.test_in is not None:
        splits.append(("test", trainer.test_in, trainer.test_ext))
    for split, x, ext in splits:
        for k, v in sample_and_average(trainer.model, x, ext, n, shards=trainer.shards).items():
            post[f"{split}_{k}"] = v
    return post
