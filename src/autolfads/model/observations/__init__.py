"""Observation models: how the recorded values are distributed given the factors.

Each is a small unit with its cost (-log p), the number of readout parameters per channel and
how they map to the distribution, and its mean (what the outputs' `rates` hold):

    poisson               spike counts                     (poisson.py)
    gamma                 continuous positive, e.g. EMG     (gamma.py)
    zero_inflated_gamma   non-negative, mostly exact zeros: deconvolved calcium events
    gaussian              any real values                   (gaussian.py)

`model.observation: auto` picks one from the data (choose.py) and says why.
"""

from __future__ import annotations

import torch

from autolfads.model.observations.base import Observation
from autolfads.model.observations.gamma import Gamma
from autolfads.model.observations.gaussian import Gaussian
from autolfads.model.observations.poisson import (
    Poisson,
    log_factorial,
    poisson_cost,
    poisson_nll,
)
from autolfads.model.observations.zero_inflated_gamma import ZeroInflatedGamma

MODELS: dict[str, type[Observation]] = {
    m.name: m for m in (Poisson, Gamma, ZeroInflatedGamma, Gaussian)
}


def build(name: str, train_x: torch.Tensor, *other_x: torch.Tensor) -> Observation:
    """The observation model `name` with its data constants taken from the training trials
    (other_x: the other splits, for zero-inflated Gamma's thresholds)."""
    if name == "poisson":
        return Poisson()
    if name == "zero_inflated_gamma":
        return ZeroInflatedGamma(train_x, *other_x)
    if name in MODELS:
        return MODELS[name](train_x)
    raise ValueError(f"unknown observation model {name!r}; known: {', '.join(MODELS)}")


__all__ = ["MODELS", "Observation", "build", "log_factorial", "poisson_cost", "poisson_nll"]
