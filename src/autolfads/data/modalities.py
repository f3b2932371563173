"""Synthetic recordings beyond spike counts, driven by the Lorenz latents of synthetic.py, with the
truth in the file: EMG-like Gamma data and two-photon-like calcium traces.

EMG (`make_emg`; SeedSequence(seed) spawned into latents, readout, noise):
1. Latents as in synthetic.py steps 1-2 (n_conditions Lorenz trajectories, z-scored), trials
   ordered condition by condition.
2. Each channel's mean envelope mu = a_n * exp(z W) with W as synthetic.py's readout (entries
   U(1, 2) with a random sign, / 3) and a per-channel amplitude a_n ~ U(0.5, 2) (arbitrary units,
   as rectified EMG is).
3. Observed x ~ Gamma(shape k, scale mu / k): mean mu, coefficient of variation 1/sqrt(k)
   (k = 4 by default). The truth is mu.

Calcium (`make_calcium`; streams latents, readout, spikes, indicator, noise):
1. Spike rates as synthetic.py (mean `mean_rate_hz`, frames of 1/frame_rate_hz s), Poisson spikes.
   The same rates hold for `PRE_FRAMES` frames before each trial, so every trial starts with the
   indicator already in its steady state rather than at zero.
2. Indicator: each spike adds gain_n * (exp(-t/tau_decay) - exp(-t/tau_rise)), scaled to peak 1,
   with gain_n ~ U(0.5, 1.5) (dF/F per spike); baseline_n ~ U(-0.05, 0.05); Gaussian noise of
   SD `noise` (dF/F). The truth is the spike rates (expected spikes per frame).

Both carry the z-scored Lorenz state (3 variables per bin) as decode targets (`behavior`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import MATLAB_LAYOUT, Dataset
from autolfads.data.io import from_array
from autolfads.data.synthetic import READOUT_SCALE, lorenz_trajectories
from autolfads.errors import UserInputError

EMG_DEFAULTS = {"channels": 16, "conditions": 20, "trials_per_condition": 10, "bins": 50,
                "shape": 4.0}
CALCIUM_DEFAULTS = {"neurons": 40, "conditions": 20, "trials_per_condition": 10, "bins": 100,
                    "frame_rate_hz": 30.0, "mean_rate_hz": 5.0, "tau_rise_s": 0.05,
                    "tau_decay_s": 0.4, "noise": 0.1}
PRE_FRAMES = 60


@dataclass
class ModalityData:
    data: np.ndarray  # (trials, time, channels) float32 observed signal
    truth: np.ndarray  # (trials, time, channels) float32: EMG means / calcium spike rates
    conditions: np.ndarray  # (trials,)
    bin_size_s: float
    behavior: np.ndarray  # (trials, time, 3) the z-scored Lorenz state: decode targets
    spikes: np.ndarray | None = None  # calcium: the spikes behind the traces


def _latent_drive(rng_latent: np.random.Generator, rng_readout: np.random.Generator,
                  conditions: int, bins: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(z W, z) per condition, (conditions, bins, channels) and (conditions, bins, 3), as
    synthetic.py's readout."""
    traj = lorenz_trajectories(rng_latent, conditions, bins)
    z = (traj - traj.mean(axis=(0, 1))) / traj.std(axis=(0, 1))
    w = rng_readout.uniform(1.0, 2.0, size=(3, channels)) * rng_readout.choice(
        [-1.0, 1.0], size=(3, channels)) * READOUT_SCALE
    return z @ w, z


def _positive(name: str, **values: float) -> None:
    for key, v in values.items():
        if not (np.isfinite(v) and v > 0):
            raise UserInputError(f"synth {name}: --{key.replace('_', '-')} {v}: must be positive")


def make_emg(seed: int = 0, channels: int = 16, conditions: int = 20,
             trials_per_condition: int = 10, bins: int = 50, shape: float = 4.0,
             bin_size_s: float = 0.01) -> ModalityData:
    _positive("emg", channels=channels, conditions=conditions, bins=bins, shape=shape,
              trials_per_condition=trials_per_condition)
    rng_latent, rng_readout, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    drive, z = _latent_drive(rng_latent, rng_readout, conditions, bins, channels)
    amplitude = rng_readout.uniform(0.5, 2.0, size=channels)
    cond = np.repeat(np.arange(conditions), trials_per_condition)
    mean = amplitude * np.exp(drive)[cond]
    data = rng_noise.gamma(shape, mean / shape)
    return ModalityData(data.astype(np.float32), mean.astype(np.float32), cond, bin_size_s,
                        z[cond].astype(np.float32))


def indicator_kernel(frame_rate_hz: float, tau_rise_s: float, tau_decay_s: float) -> np.ndarray:
    """The fluorescence one spike adds, frame by frame, peak 1, until it decays below 1e-3."""
    t = np.arange(int(np.ceil(frame_rate_hz * tau_decay_s * 8)) + 1) / frame_rate_hz
    k = np.exp(-t / tau_decay_s) - np.exp(-t / tau_rise_s)
    return k / k.max()


def make_calcium(seed: int = 0, neurons: int = 40, conditions: int = 20,
                 trials_per_condition: int = 10, bins: int = 100, frame_rate_hz: float = 30.0,
                 mean_rate_hz: float = 5.0, tau_rise_s: float = 0.05, tau_decay_s: float = 0.4,
                 noise: float = 0.1) -> ModalityData:
    _positive("calcium", neurons=neurons, conditions=conditions, bins=bins,
              trials_per_condition=trials_per_condition, frame_rate_hz=frame_rate_hz,
              mean_rate_hz=mean_rate_hz, tau_rise_s=tau_rise_s, tau_decay_s=tau_decay_s)
    if not (np.isfinite(noise) and noise >= 0) or tau_rise_s >= tau_decay_s:
        raise UserInputError("synth calcium: --noise must be >= 0 and --tau-rise-s below "
                             "--tau-decay-s")
    rng_latent, rng_readout, rng_spikes, rng_ind, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
    drive, z = _latent_drive(rng_latent, rng_readout, conditions, bins, neurons)
    dt = 1.0 / frame_rate_hz
    cond_rates = np.exp(drive + np.log(mean_rate_hz) - np.log(np.exp(drive).mean())) * dt
    cond = np.repeat(np.arange(conditions), trials_per_condition)
    rates = cond_rates[cond]  # (trials, bins, neurons) expected spikes per frame
    lead = np.repeat(rates[:, :1], PRE_FRAMES, axis=1)  # the indicator's steady state first
    spikes = rng_spikes.poisson(np.concatenate([lead, rates], axis=1)).astype(np.float64)

    kernel = indicator_kernel(frame_rate_hz, tau_rise_s, tau_decay_s)
    n_total = spikes.shape[1]
    conv = np.zeros_like(spikes)
    for lag, k in enumerate(kernel[:n_total]):
        conv[:, lag:] += k * spikes[:, : n_total - lag]
    gain = rng_ind.uniform(0.5, 1.5, size=neurons)
    baseline = rng_ind.uniform(-0.05, 0.05, size=neurons)
    trace = gain * conv + baseline + rng_noise.normal(0.0, noise, size=conv.shape)
    return ModalityData(trace[:, PRE_FRAMES:].astype(np.float32), rates.astype(np.float32),
                        cond, dt, z[cond].astype(np.float32),
                        spikes=spikes[:, PRE_FRAMES:].astype(np.float32))


def modality_dataset(kind: str, seed: int = 0, cfg: DataConfig | None = None,
                     **params) -> Dataset:
    """`emg` or `calcium` as a Dataset, split and validated like a user's file."""
    d = make_emg(seed=seed, **params) if kind == "emg" else make_calcium(seed=seed, **params)
    label = {"emg": "EMG (Gamma)", "calcium": "calcium traces"}[kind]
    ds = from_array(d.data, layout="trials_time_neurons", truth=d.truth, conditions=d.conditions,
                    cfg=cfg, source=f"built-in Lorenz {label} (seed {seed})",
                    bin_size_s=d.bin_size_s, behavior=d.behavior)
    ds.layout = MATLAB_LAYOUT
    return ds
