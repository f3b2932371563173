"""What every observation model provides (the units next to this file implement it).

The readout maps the factors to `n_params` parameters per channel and bin,

    theta_t = W_out f_t + b_out        (B, T, n_params * N), parameter k of channel n at k*N + n

and the observation model turns them into the reconstruction cost -log p(x | theta) and into its
mean E[x | theta], the denoised signal in the data's units (the outputs' `rates`).
"""

from __future__ import annotations

import torch
from torch import nn

from autolfads.model.augment import gradient_only_through


def split(params: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """(B, T, k * N) readout -> k tensors (B, T, N), one per parameter."""
    return params.unflatten(-1, (k, -1)).unbind(-2)


def center_and_spread(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's mean and SD over the training data, (N,) each: the unit in which the
    encoders read a continuous signal. A channel flat over the training trials (refused before
    training, see choose.py) must not divide by ~0: its SD is at least a millionth of the
    largest."""
    flat = train_x.reshape(-1, train_x.shape[-1])
    sd = flat.std(0)
    return flat.mean(0), sd.clamp_min(max(1e-6 * float(sd.max()), 1e-12))


class Observation(nn.Module):
    """One observation model. Data constants it needs (a threshold, a scale) are buffers, so they
    travel with the model's state_dict and checkpoints."""

    name: str = ""
    n_params: int = 1

    def nll(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """-log p(x | theta) per entry, (B, T, N)."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x | theta], (B, T, N), in the data's units."""
        raise NotImplementedError

    def init_bias(self, x: torch.Tensor) -> torch.Tensor:
        """The readout bias (n_params * N,) at which the model starts: each channel's own
        distribution over the training data (x: trials x time x channels), so training starts
        at the null model."""
        raise NotImplementedError

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoders read: the data, on a scale where a GRU can use it (counts as they
        are; continuous data per channel centred and divided by its spread, or, for events with
        exact zeros, divided by their typical size)."""
        return x

    def data_term(self, x: torch.Tensor) -> torch.Tensor | None:
        """A part of the cost that depends on the data alone and is slow to compute, computed
        once per split by the Trainer and passed back to `cost` (Poisson: log x!)."""
        return None

    def cost(self, x: torch.Tensor, params: torch.Tensor, weight: torch.Tensor | None = None,
             grad_mask: torch.Tensor | None = None, data_term: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cost, nll): the sum of weight * nll (weight None: the mean) with its gradient flowing
        only where grad_mask is 1 (coordinated dropout), and the detached elementwise nll."""
        nll = self.nll(x, params)
        through = gradient_only_through(nll, grad_mask)
        cost = through.mean() if weight is None else (through * weight).sum()
        return cost, nll.detach()
