"""Observation model: spike counts are Poisson given the rates, with log-rates from the factors.

    log lambda_t = W_out f_t + b_out          (rates in expected counts per bin)
    -log p(x | lambda) = lambda - x log lambda + log Gamma(x + 1)
"""

from __future__ import annotations

import torch


def poisson_nll(counts: torch.Tensor, log_rates: torch.Tensor) -> torch.Tensor:
    """Elementwise negative log-likelihood, same shape as the inputs."""
    return torch.exp(log_rates) - counts * log_rates + torch.lgamma(counts + 1.0)
