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


@torch.no_grad()
def sample_and_average(
    model: LFADS,
    data: torch.Tensor,
    ext_input: torch.Tensor | None = None,
    n_samples: int = 50,
    max_batch: int = 1024,  # rows per pass: larger ones fall out of cache and run slower (bench)
    shards: Shards | None = None,
    encode_once: bool = True,
) -> dict[str, np.ndarray]:
    """data: (B, T, N) encoder input (model.obs.encoder_input of the data) -> {'rates': (B,T,N)
    the observation model's mean in the data's units, 'factors': (B,T,F), 'inferred_inputs':
    (B,T,U), 'ic_mean': (B, ic_dim)} averaged over `n_samples` posterior samples. `shards`
    spreads each pass over threads (training/parallel.py); the draws are made for the whole pass
    first."""
    model.eval()
    shards = shards or Shards(1)
    B, T_enc = data.shape[:2]
    T = model.recon_seq_len or T_enc
    chunk = max(1, max_batch // n_samples)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
    for start in range(0, B, chunk):
        x = data[start : start + chunk]
        b = x.shape[0]
        # Dropout is off, so the encoders' outputs do not depend on the draws: encode each trial
        # once, then generate its samples. Sample s of trial i sits at row s * b + i, so a
        # reshape to (S, b, ...) averages cleanly; the draws are those of one pass over the
        # S * b rows, as when every copy was encoded (tests/test_train.py checks both agree).
        ic_mean, ic_logvar, ci = model.encode(x, draw_noise(model, b, T_enc, x, sample=False))
        enc = (ic_mean.repeat(n_samples, 1), ic_logvar.repeat(n_samples, 1), ci)
        es = None if ext_input is None else ext_input[start : start + chunk].repeat(n_samples, 1, 1)
        xs = None if encode_once else x.repeat(n_samples, 1, 1)
        nz = draw_noise(model, b * n_samples, T_enc, x, sample=True)

        def run(s: slice, enc=enc, es=es, nz=nz, xs=xs):
            ext = None if es is None else es[s]
            if xs is not None:  # the plain form
                out = model(xs[s], ext, noise=nz.select(s))
            else:  # s holds whole samples, so the b trials' controller inputs serve them all
                out = model.generate((enc[0][s], enc[1][s], enc[2]), ext, nz.select(s), T)
            return model.obs.mean(out.obs_params), out.factors, out.inferred_inputs

        outs = shards.map(run, _whole_samples(shards, b, n_samples))
        rates, factors, inputs = (torch.cat(t) for t in zip(*outs, strict=True))

        def avg(t: torch.Tensor, b: int = b) -> np.ndarray:
            return t.reshape(n_samples, b, *t.shape[1:]).mean(0).cpu().numpy()

        parts["rates"].append(avg(rates))
        parts["factors"].append(avg(factors))
        parts["inferred_inputs"].append(avg(inputs))
        parts["ic_mean"].append(ic_mean.cpu().numpy())
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def _whole_samples(shards: Shards, b: int, n_samples: int) -> list[slice]:
    """Row ranges, one per shard (as many as shards.split allows for the rows), each holding
    whole samples: b consecutive rows."""
    k = min(len(shards.split(b * n_samples)), n_samples)
    edges = [round(i * n_samples / k) * b for i in range(k + 1)]
    return [slice(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


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
