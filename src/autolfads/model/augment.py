"""Regularisers against identity overfitting (a VAE that just copies spikes through to rates).

Coordinated dropout (CD): each step, a random fraction `cd_rate` of the input entries is zeroed
(the rest scaled by 1/keep). The reconstruction cost keeps its value on every entry, but its
gradient flows only through the entries the encoder did NOT see, so copying input to output
earns nothing.

Sample validation (SV): a fixed, seeded fraction `sv_rate` of the entries of every trial is
never shown to the encoder and never trained on; the reconstruction cost on those entries is a
held-out check of the rates that identity overfitting cannot fake.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from autolfads.model.noise import bernoulli


def coordinated_dropout(data: torch.Tensor, rate: float
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """data (B, T, N) -> (input for the encoders, gradient mask: 1 where the input was dropped)."""
    if rate <= 0.0:
        return data, None
    keep = bernoulli(data.shape, 1.0 - rate, data)
    return torch.mul(data, keep).mul_(1.0 / (1.0 - rate)), torch.rsub(keep, 1.0)


def gradient_only_through(cost: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Same value as `cost`, gradient only where mask == 1."""
    if mask is None:
        return cost
    held = cost.detach()
    return held + mask * (cost - held)


def sample_validation_mask(shape: tuple[int, ...], rate: float, seed: int) -> torch.Tensor | None:
    """Fixed held-out entries (True = held out) of a whole split; None when SV is off."""
    if rate <= 0.0:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen) < rate


def mask_digest(*masks: torch.Tensor | None) -> str:
    """A short fingerprint of the held-out SV entries ("" when SV is off): checkpoints carry it,
    so weights are never carried over to a worker that holds out other entries."""
    if all(m is None for m in masks):
        return ""
    h = hashlib.sha1()
    for m in masks:
        if m is not None:
            h.update(str(tuple(m.shape)).encode())
            h.update(np.packbits(m.cpu().numpy().ravel()).tobytes())
    return h.hexdigest()[:16]


def hide_entries(data: torch.Tensor, held_out: torch.Tensor | None, rate: float) -> torch.Tensor:
    """Zero the held-out SV entries of the encoder input (scaled so the input mean is kept)."""
    if held_out is None:
        return data
    return data * (~held_out) / (1.0 - rate)
