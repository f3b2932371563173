"""Gaussian observations, for continuous signals that can be negative (LFP features, z-scored
traces): two readout parameters per channel, the mean and the log variance, both in units of
the channel's own spread so that one readout serves data of any scale.

    a_t, b_t = W_out f_t + b_out
    mu_t = c + s a_t,  log sigma^2_t = 2 log s + b_t      (c, s: the channel's mean and SD)
    -log p(x | mu, sigma^2) = 0.5 (log 2 pi + log sigma^2 + (x - mu)^2 / sigma^2)
    mean = mu
"""

from __future__ import annotations

import math

import torch

from autolfads.model.observations.base import Observation, center_and_spread, split


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) * torch.exp(-logvar))


class Gaussian(Observation):
    name = "gaussian"
    n_params = 2

    def __init__(self, train_x: torch.Tensor):
        super().__init__()
        center, spread = center_and_spread(train_x)
        self.register_buffer("center", center)
        self.register_buffer("spread", spread)

    def _moments(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = split(params, 2)
        return self.center + self.spread * a, 2.0 * torch.log(self.spread) + b

    def nll(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return gaussian_nll(x, *self._moments(params))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self._moments(params)[0]

    def init_bias(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(2 * x.shape[-1], dtype=x.dtype, device=x.device)  # the channel's own

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.spread
