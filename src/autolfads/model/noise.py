"""All random draws of one LFADS forward pass, made up front.

Drawing every dropout mask and every posterior-sample noise before the recurrences start keeps the
time loops free of RNG calls, lets one draw fill a whole (T, B, D) block instead of T small ones,
and lets the fast model and the plain reference (reference.py) consume the very same draws, which
is what the numerical-equivalence test relies on.

Masks are inverted-dropout masks: 0 with probability `rate`, 1/(1 - rate) otherwise.
"""

from __future__ import annotations

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


def uniform(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) draws of `like`'s dtype and device.

    On CPU, torch's Mersenne Twister costs ~6 ns per float here; numpy's SFC64 is about twice as
    fast and a training step needs millions of mask entries. Its seed comes from torch's generator,
    so torch.manual_seed and the checkpointed torch RNG state still fix every draw.
    """
    if like.device.type != "cpu":
        return torch.rand(shape, dtype=like.dtype, device=like.device)
    seed = int(torch.randint(0, 2**62, (1,)))
    rng = np.random.Generator(np.random.SFC64(seed))
    return torch.from_numpy(rng.random(shape, dtype=np.float32)).to(like.dtype)


def keep_mask(shape: tuple[int, ...], rate: float, like: torch.Tensor) -> torch.Tensor | None:
    """An inverted-dropout mask, or None when dropout is off."""
    if rate <= 0.0:
        return None
    keep = 1.0 - rate
    u = uniform(shape, like)
    return torch.where(u < keep, 1.0 / keep, 0.0).to(like.dtype)


def draw_noise(model, B: int, T_enc: int, like: torch.Tensor, sample: bool) -> Noise:
    """Every random draw of one forward pass of `model` on a batch of B trials."""
    cfg = model.cfg
    T = model.recon_seq_len or T_enc
    rate = model.dropout_rate if model.training else 0.0
    con = model.use_con

    def mask(*shape: int) -> torch.Tensor | None:
        return keep_mask(shape, rate, like)

    def normal(*shape: int) -> torch.Tensor | None:
        return torch.randn(shape, dtype=like.dtype, device=like.device) if sample else None

    return Noise(
        data=mask(B, T_enc, model.n_neurons),
        ic_enc=mask(B, 2 * cfg.ic_enc_dim),
        ci=mask(T_enc, B, 2 * cfg.ci_enc_dim) if con else None,
        fac=mask(T, B, cfg.fac_dim) if con else None,
        gen=mask(T + 1, B, cfg.gen_dim),
        z0=normal(B, cfg.ic_dim),
        u=normal(T, B, cfg.co_dim) if con else None,
    )
