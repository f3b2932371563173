"""All random draws of one LFADS forward pass, made up front.

Drawing every dropout mask and every posterior-sample noise before the recurrences start keeps the
time loops free of RNG calls, lets one draw fill a whole (T, B, D) block instead of T small ones,
and lets the fused and the plain form of the model (lfads.py) consume the very same draws, which
is what the numerical-equivalence test relies on.

Masks are inverted-dropout masks: 0 with probability `rate`, 1/(1 - rate) otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Noise:
    data: torch.Tensor | None  # (B, T_enc, N_in) dropout on the encoder input
    ic_enc: torch.Tensor | None  # (B, 2 * ic_enc_dim) dropout on the IC encoder's final states
    ci: torch.Tensor | None  # (T_enc, B, 2 * ci_enc_dim) dropout on the controller inputs
    fac: torch.Tensor | None  # (T, B, fac_dim) dropout on f_{t-1} as the controller reads it
    gen: torch.Tensor | None  # (T + 1, B, gen_dim) dropout on g_t before the factor readout
    z0: torch.Tensor | None  # (B, ic_dim) standard normal; None when not sampling
    u: torch.Tensor | None  # (T, B, co_dim) standard normal; None when not sampling

    def select(self, rows: slice) -> Noise:
        """The draws of the trials `rows` of the batch (for running a batch in shards)."""
        def first(a):
            return None if a is None else a[rows]

        def second(a):
            return None if a is None else a[:, rows]

        return Noise(first(self.data), first(self.ic_enc), second(self.ci), second(self.fac),
                     second(self.gen), first(self.z0), second(self.u))


def _seed() -> int:
    return int(torch.randint(0, 2**62, (1,)))


def bernoulli(shape: tuple[int, ...], p: float, like: torch.Tensor, seed: int | None = None
              ) -> torch.Tensor:
    """Draws of 1 (probability p) and 0, in `like`'s dtype and device.

    On CPU, torch's Mersenne Twister costs ~12 ns per entry here and a training step needs
    millions of mask entries. numpy's SFC64 makes 16-bit integers at ~1 ns each; comparing them
    with round(p * 2^16) gives p to within 2^-17. The seed comes from torch's generator (`seed`:
    one drawn from it before), so torch.manual_seed and the checkpointed torch RNG state still
    fix every draw.
    """
    if like.device.type != "cpu":
        return torch.rand(shape, device=like.device).lt_(p).to(like.dtype)
    rng = np.random.Generator(np.random.SFC64(_seed() if seed is None else seed))
    draws = rng.integers(0, 2**16, size=shape, dtype=np.uint16)
    return torch.from_numpy(draws < round(p * 2**16)).to(like.dtype)


def keep_mask(shape: tuple[int, ...], rate: float, like: torch.Tensor, seed: int | None = None
              ) -> torch.Tensor | None:
    """An inverted-dropout mask, or None when dropout is off."""
    if rate <= 0.0:
        return None
    keep = 1.0 - rate
    return bernoulli(shape, keep, like, seed).mul_(1.0 / keep)


def draw_noise(model, B: int, T_enc: int, like: torch.Tensor, sample: bool,
               map_fn: Callable | None = None) -> Noise:
    """Every random draw of one forward pass of `model` on a batch of B trials.

    map_fn(f, items) -> [f(item) ...] (e.g. training/parallel.Shards.map) fills the dropout masks
    in parallel; their seeds are drawn here first, in a fixed order, so the draws are the same.
    """
    cfg = model.cfg
    T = model.recon_seq_len or T_enc
    rate = model.dropout_rate if model.training else 0.0
    con = model.use_con
    shapes = {
        "data": (B, T_enc, model.n_neurons),
        "ic_enc": (B, 2 * cfg.ic_enc_dim),
        "ci": (T_enc, B, 2 * cfg.ci_enc_dim) if con else None,
        "fac": (T, B, cfg.fac_dim) if con else None,
        "gen": (T + 1, B, cfg.gen_dim),
    }
    masks: dict[str, torch.Tensor | None] = dict.fromkeys(shapes)
    todo = [(k, shape) for k, shape in shapes.items() if shape is not None and rate > 0.0]
    todo.sort(key=lambda job: -math.prod(job[1]))  # largest first: map_fn shares out the rest
    on_cpu = like.device.type == "cpu"
    seeds = [_seed() if on_cpu else None for _ in todo]
    jobs = [(k, shape, seed) for (k, shape), seed in zip(todo, seeds, strict=True)]

    def make(job):
        return keep_mask(job[1], rate, like, job[2])

    if map_fn is None or not on_cpu:
        def map_fn(f, items):
            return [f(i) for i in items]

    made = map_fn(make, jobs)
    masks.update({k: m for (k, _, _), m in zip(jobs, made, strict=True)})

    def normal(*shape: int) -> torch.Tensor | None:
        return torch.randn(shape, dtype=like.dtype, device=like.device) if sample else None

    return Noise(**masks, z0=normal(B, cfg.ic_dim), u=normal(T, B, cfg.co_dim) if con else None)
