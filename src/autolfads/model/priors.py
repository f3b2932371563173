"""Priors over the latent variables and their KL terms.

IC prior:  g0-latent z ~ N(mu_p, var_p) with a learnable mean (variance fixed), posterior
           q(z|x) = N(mu_q, var_q); KL is analytic:
           KL = 1/2 sum_d [ log(var_p/var_q) + (var_q + (mu_q - mu_p)^2) / var_p - 1 ].

Inferred-input prior: an AR(1) process per input dimension d with learnable time constant tau_d
           and innovation variance nvar_d,
           u_0 ~ N(0, nvar/(1 - a^2)),   u_t | u_{t-1} ~ N(a u_{t-1}, nvar),   a = exp(-1/tau).
           The KL to the (Gaussian, time-independent) posterior is estimated with the sample
           used by the generator: KL ~= log q(u) - log p(u), summed over time and dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_LOG2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (_LOG2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))


class GaussianPrior(nn.Module):
    def __init__(self, dim: int, variance: float):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.register_buffer("logvar", torch.full((dim,), math.log(variance)))

    def kl(self, post_mean: torch.Tensor, post_logvar: torch.Tensor) -> torch.Tensor:
        """(B, D) posterior -> (B,) KL(q || p)."""
        var_ratio = torch.exp(post_logvar - self.logvar)
        mean_term = (post_mean - self.mean) ** 2 * torch.exp(-self.logvar)
        return 0.5 * (var_ratio + mean_term - 1.0 - post_logvar + self.logvar).sum(dim=-1)


class AR1Prior(nn.Module):
    def __init__(self, dim: int, tau: float, nvar: float):
        super().__init__()
        self.logtau = nn.Parameter(torch.full((dim,), math.log(tau)))
        self.lognvar = nn.Parameter(torch.full((dim,), math.log(nvar)))

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, T, D) -> (B,) log p(u) under the AR(1) process."""
        alpha = torch.exp(-1.0 / torch.exp(self.logtau))
        # Stationary variance for the first bin, innovation variance afterwards.
        logpvar0 = self.lognvar - torch.log1p(-(alpha**2))
        first = gaussian_log_prob(u[:, 0], torch.zeros_like(u[:, 0]), logpvar0)
        rest = gaussian_log_prob(u[:, 1:], alpha * u[:, :-1], self.lognvar)
        return first.sum(dim=-1) + rest.sum(dim=(1, 2))

    def kl(self, u: torch.Tensor, post_mean: torch.Tensor, post_logvar: torch.Tensor
           ) -> torch.Tensor:
        """Single-sample KL estimate; all (B, T, D) -> (B,)."""
        log_q = gaussian_log_prob(u, post_mean, post_logvar).sum(dim=(1, 2))
        return log_q - self.log_prob(u)
