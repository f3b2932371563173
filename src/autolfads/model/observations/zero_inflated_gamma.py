"""Zero-inflated Gamma observations, for deconvolved calcium events (and other non-negative
signals that are exactly zero in most bins), as in the AutoLFADS calcium work: three readout
parameters per channel.

    log mu_t, log k_t, logit q_t = W_out f_t + b_out
    p(x = 0)      = 1 - q_t                       (no event in the bin)
    p(x | x > 0)  = q_t * Gamma(x - loc; mu_t, k_t)  (event sizes above the channel threshold)
    mean = q_t * (loc + mu_t)                     (includes the zero mass)

loc is each channel's threshold: a hair under its smallest non-zero value in the data, so every
event lies above it (deconvolution reports no event smaller than its own threshold).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autolfads.model.observations.base import Observation, split
from autolfads.model.observations.gamma import gamma_nll, moment_params, typical_size

LOC_FRACTION = 0.99  # loc = this times the smallest non-zero value of the channel


def thresholds(*xs: torch.Tensor) -> torch.Tensor:
    """loc per channel (last axis) from the data (one array or several, e.g. each split);
    channels without a non-zero value get 0."""
    def smallest_of(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return torch.where(flat > 0, flat, torch.full_like(flat, torch.inf)).amin(0)

    smallest = torch.stack([smallest_of(x) for x in xs]).amin(0)
    return torch.where(torch.isfinite(smallest), LOC_FRACTION * smallest,
                       torch.zeros_like(smallest))


def zig_nll(x: torch.Tensor, loc: torch.Tensor, log_mean: torch.Tensor, log_shape: torch.Tensor,
            logit_q: torch.Tensor) -> torch.Tensor:
    """Elementwise -log p(x) of the zero-inflated Gamma above (x >= 0, loc per channel)."""
    event = x > 0
    # Zero bins take the Gamma at a harmless point (masked out below): no NaN in any gradient.
    above = torch.where(event, x - loc, torch.ones_like(x)).clamp_min(1e-6)
    nll_event = F.softplus(-logit_q) + gamma_nll(above, log_mean, log_shape)  # -log q + Gamma
    return torch.where(event, nll_event, F.softplus(logit_q))  # -log(1 - q)


class ZeroInflatedGamma(Observation):
    name = "zero_inflated_gamma"
    n_params = 3

    def __init__(self, train_x: torch.Tensor, *other_x: torch.Tensor):
        """train_x scales the encoders' input; loc comes from it and other_x (the other splits:
        a validation event below the training minimum must still lie above loc)."""
        super().__init__()
        self.register_buffer("loc", thresholds(train_x, *other_x))
        self.register_buffer("scale", typical_size(train_x))

    def nll(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        log_mean, log_shape, logit_q = split(params, 3)
        return zig_nll(x, self.loc, log_mean, log_shape, logit_q)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        log_mean, _, logit_q = split(params, 3)
        return torch.sigmoid(logit_q) * (self.loc + torch.exp(log_mean))

    def init_bias(self, x: torch.Tensor) -> torch.Tensor:
        event = x > 0
        q = event.reshape(-1, x.shape[-1]).float().mean(0).clamp(1e-3, 1 - 1e-3)
        above = torch.where(event, x - self.loc, torch.full_like(x, torch.nan))
        log_mean, log_shape = moment_params(above.clamp_min(1e-6))
        return torch.cat([log_mean, log_shape, torch.logit(q)])

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.scale
