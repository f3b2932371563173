"""Synthetic Lorenz spiking data with ground-truth rates (the built-in demo dataset).

Exact recipe (`make_lorenz`, all randomness from `numpy.random.SeedSequence(seed)`, spawned into
three independent streams so that e.g. changing the neuron count leaves the latents unchanged):

1. Latents (stream 0). For each of `n_conditions` conditions draw an initial state
   x, y ~ U(-15, 15), z ~ U(10, 40). Integrate the Lorenz system
   dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z
   with sigma = 10, rho = 28, beta = 8/3 by classical 4th-order Runge-Kutta with a fixed step
   dt_int = 0.006 (Lorenz time units). The first 1000 steps (6 time units) are a burn-in, discarded
   so that every condition starts on the attractor. Then `n_time` bins are taken, one every
   4 steps, so a trial spans 50 * 4 * 0.006 = 1.2 time units (one to two loops of a wing).
2. Each of the 3 latent dimensions is z-scored across all conditions and bins.
3. Readout (stream 1). W (3 x n_neurons) has entries of magnitude U(1, 2) with a random sign,
   divided by 3 so that the summed log-rate modulation stays moderate: x and y are strongly
   correlated on the attractor (r ~ 0.9), and with 1/sqrt(3) some neurons reached thousands of
   spikes/s. With 1/3 the per-neuron log-rate std is ~0.4-1.3 (median ~0.8) and the peak rate is a
   few hundred spikes/s.
   log-rate = z W + b, with one scalar b chosen so that the mean rate over all conditions, bins and
   neurons is exactly `mean_rate_hz` (default 20 spikes/s).
4. Rates in expected counts per bin = exp(log-rate) * bin_size_s. All trials of a condition share
   the condition's rates; trials are ordered condition by condition (condition c owns trials
   c * trials_per_condition ... (c + 1) * trials_per_condition - 1).
5. Spikes (stream 2): independent Poisson counts from those rates, stored as float32.

Defaults: 65 conditions x 20 trials = 1300 trials, 50 bins of 10 ms, 29 neurons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import MATLAB_LAYOUT, Dataset
from autolfads.data.io import from_array
from autolfads.data.writers import write_dataset
from autolfads.errors import UserInputError

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
DT_INT = 0.006
BURN_IN_STEPS = 1000
STEPS_PER_BIN = 4
READOUT_SCALE = 1.0 / 3.0


@dataclass
class LorenzData:
    spikes: np.ndarray  # (trials, time, neurons) float32 Poisson counts
    rates: np.ndarray  # (trials, time, neurons) float32 expected counts per bin
    latents: np.ndarray  # (trials, time, 3) z-scored Lorenz state
    conditions: np.ndarray  # (trials,) 0-based condition of each trial
    bin_size_s: float


def _lorenz_deriv(s: np.ndarray) -> np.ndarray:
    x, y, z = s[:, 0], s[:, 1], s[:, 2]
    return np.stack([SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z], axis=1)


def _rk4_step(s: np.ndarray, h: float) -> np.ndarray:
    k1 = _lorenz_deriv(s)
    k2 = _lorenz_deriv(s + 0.5 * h * k1)
    k3 = _lorenz_deriv(s + 0.5 * h * k2)
    k4 = _lorenz_deriv(s + h * k3)
    return s + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def lorenz_trajectories(rng: np.random.Generator, n_conditions: int, n_time: int) -> np.ndarray:
    """Raw (not z-scored) Lorenz states, (n_conditions, n_time, 3); conditions run in parallel."""
    low, high = np.array([-15.0, -15.0, 10.0]), np.array([15.0, 15.0, 40.0])
    state = rng.uniform(low, high, size=(n_conditions, 3))
    for _ in range(BURN_IN_STEPS):
        state = _rk4_step(state, DT_INT)
    out = np.empty((n_conditions, n_time, 3))
    for t in range(n_time):
        out[:, t] = state
        for _ in range(STEPS_PER_BIN):
            state = _rk4_step(state, DT_INT)
    return out


def make_lorenz(
    seed: int = 0,
    n_conditions: int = 65,
    trials_per_condition: int = 20,
    n_neurons: int = 29,
    n_time: int = 50,
    bin_size_s: float = 0.01,
    mean_rate_hz: float = 20.0,
) -> LorenzData:
    """Generate the Lorenz dataset described in the module docstring; deterministic per seed."""
    if min(n_conditions, trials_per_condition, n_neurons, n_time) < 1:
        raise UserInputError("make_lorenz: all sizes must be at least 1")
    if bin_size_s <= 0 or mean_rate_hz <= 0:
        raise UserInputError("make_lorenz: bin_size_s and mean_rate_hz must be positive")
    rng_latent, rng_readout, rng_spikes = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    traj = lorenz_trajectories(rng_latent, n_conditions, n_time)
    z = (traj - traj.mean(axis=(0, 1))) / traj.std(axis=(0, 1))

    magnitude = rng_readout.uniform(1.0, 2.0, size=(3, n_neurons))
    sign = rng_readout.choice([-1.0, 1.0], size=(3, n_neurons))
    w = magnitude * sign * READOUT_SCALE
    drive = z @ w  # (conditions, time, neurons)
    # One shared offset: neurons keep their own mean rates, the population mean is as requested.
    b = np.log(mean_rate_hz) - np.log(np.exp(drive).mean())
    cond_rates = np.exp(drive + b) * bin_size_s

    conditions = np.repeat(np.arange(n_conditions), trials_per_condition)
    rates = cond_rates[conditions]
    spikes = rng_spikes.poisson(rates).astype(np.float32)
    return LorenzData(
        spikes=spikes,
        rates=rates.astype(np.float32),
        latents=z[conditions].astype(np.float32),
        conditions=conditions,
        bin_size_s=float(bin_size_s),
    )


def lorenz_dataset(seed: int = 0, cfg: DataConfig | None = None, **kwargs) -> Dataset:
    """The Lorenz data as a `Dataset`, split and validated exactly like a user's file."""
    d = make_lorenz(seed=seed, **kwargs)
    ds = from_array(
        d.spikes,
        layout="trials_time_neurons",
        truth=d.rates,
        conditions=d.conditions,
        cfg=cfg,
        source=f"built-in Lorenz (seed {seed})",
        bin_size_s=d.bin_size_s,
    )
    # No user layout exists for built-in data; the tutorial's layout is what MATLAB users expect.
    ds.layout = MATLAB_LAYOUT
    return ds


def write_lorenz(path: str | Path, seed: int = 0, fmt: str | None = None) -> Path:
    """Write the Lorenz dataset as an LFADS .h5 or tutorial .mat (writers.write_dataset: the
    format follows the extension when not given, and must match it)."""
    return write_dataset(path, lorenz_dataset(seed=seed), fmt=fmt)
