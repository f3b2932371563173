"""Synthetic chaotic-RNN spiking data with known input pulses (after the LFADS paper's
"chaotic RNN with inputs" experiment).

Exact recipe (`make_chaotic_rnn`; randomness from `numpy.random.SeedSequence(seed)` spawned into
three streams: network, trials, spikes):

1. Network (stream 0). A continuous-time vanilla RNN of `units` units,
       tau dx/dt = -x + gain * J tanh(x) + b u(t),
   J_ij ~ N(0, 1/units) (with gain > 1 the autonomous network is chaotic), b a random unit vector.
   Readout W (neurons x units), W_ij ~ N(0, 1/units) * READOUT_SCALE.
2. Trials (stream 1). Each trial starts from its own state x0 ~ N(0, 1) and gets one input pulse
   u(t) = `pulse` for PULSE_BINS bin(s) starting at a bin drawn uniformly from [edge, bins - edge),
   edge = bins // 4 (so the pulse lands in the middle half of the trial); u = 0 otherwise.
   That onset bin (0-based) is the trial's true input time.
3. Integration: forward Euler, STEPS_PER_BIN steps per bin of `bin_size_s` (dt = bin/4 = 2.5 ms
   with tau = 25 ms by default); bin t records the state at the start of the bin.
4. Rates = exp(W tanh(x) + c) * bin_size_s, in expected counts per bin, with one scalar c chosen so
   that the mean rate over all trials, bins and neurons is exactly `mean_rate_hz`.
5. Spikes (stream 2): independent Poisson counts from those rates, stored as float32.

Defaults: 50 units, gain 1.5, pulse 50, 50 neurons, 400 trials, 100 bins of 10 ms. The pulse kicks
the state by ~20 along b (4 Euler steps of dt/tau = 0.1): LFADS with its defaults finds it in
~97% of trials (bench/defaults_sweep.md). At pulse 20 (the kick of the LFADS paper's experiment,
magnitude 20 at dt/tau = 0.4) the log-rates move by ~0.5 right after it, yet among the chaotic
dynamics no configuration we tried found more than a quarter of the pulses: a harder setting.
A network this small is only weakly chaotic at gain 1.5 (for some J it settles within a few
seconds); the trials still differ strongly because each starts elsewhere and 1 s is only 40 tau.
Larger networks (e.g. --units 200 --gain 2.5) are robustly chaotic: nearby states diverge
exponentially.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import MATLAB_LAYOUT, Dataset
from autolfads.data.io import from_array
from autolfads.errors import UserInputError

STEPS_PER_BIN = 4
TAU_S = 0.025
PULSE_BINS = 1
READOUT_SCALE = 1.0
DEFAULTS = {"units": 50, "gain": 1.5, "pulse": 50.0, "neurons": 50, "trials": 400, "bins": 100}


@dataclass
class ChaoticRNNData:
    spikes: np.ndarray  # (trials, time, neurons) float32 Poisson counts
    rates: np.ndarray  # (trials, time, neurons) float32 expected counts per bin
    states: np.ndarray  # (trials, time, units) float32 network state x
    input_times: np.ndarray  # (trials,) int64 0-based onset bin of each trial's pulse
    bin_size_s: float


def input_edge(bins: int) -> int:
    """Pulses start in [edge, bins - edge)."""
    return bins // 4


def draw_network(rng: np.random.Generator, units: int,
                 neurons: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J (units x units), unit input vector b (units,), readout W (neurons x units)."""
    j = rng.normal(0.0, 1.0 / math.sqrt(units), size=(units, units))
    b = rng.normal(size=units)
    b /= np.linalg.norm(b)
    w = rng.normal(0.0, READOUT_SCALE / math.sqrt(units), size=(neurons, units))
    return j, b, w


def simulate(j: np.ndarray, b: np.ndarray, x0: np.ndarray, onsets: np.ndarray, pulse: float,
             bins: int, gain: float, bin_size_s: float = 0.01) -> np.ndarray:
    """States (trials, bins, units) of tau dx/dt = -x + gain J tanh(x) + b u(t) from x0
    (trials, units); u = `pulse` during bins onset .. onset + PULSE_BINS - 1 of each trial."""
    h = bin_size_s / STEPS_PER_BIN / TAU_S
    x = np.array(x0, dtype=np.float64)
    out = np.empty((x.shape[0], bins, x.shape[1]))
    gj_t = gain * j.T
    for t in range(bins):
        out[:, t] = x
        on = (t >= onsets) & (t < onsets + PULSE_BINS)
        drive = np.outer(on * pulse, b)
        for _ in range(STEPS_PER_BIN):
            x = x + h * (-x + np.tanh(x) @ gj_t + drive)
    return out


def _check(units: int, gain: float, pulse: float, neurons: int, trials: int, bins: int,
           bin_size_s: float, mean_rate_hz: float) -> None:
    def bad(msg: str) -> UserInputError:
        return UserInputError(f"synth chaotic_rnn: {msg}")

    if units < 2:
        raise bad(f"--units {units}: need at least 2 network units")
    if not (math.isfinite(gain) and gain > 0):
        raise bad(f"--gain {gain}: must be positive (above 1 for chaos)")
    if not (math.isfinite(pulse) and pulse >= 0):
        raise bad(f"--pulse {pulse}: must be zero or positive")
    if neurons < 1:
        raise bad(f"--neurons {neurons}: need at least 1 neuron")
    if trials < 2:
        raise bad(f"--trials {trials}: need at least 2 trials (train and valid)")
    if bins < 10:
        raise bad(f"--bins {bins}: need at least 10 bins per trial")
    if not (bin_size_s > 0 and mean_rate_hz > 0):
        raise bad("bin_size_s and mean_rate_hz must be positive")


def make_chaotic_rnn(seed: int = 0, units: int = DEFAULTS["units"], gain: float = DEFAULTS["gain"],
                     pulse: float = DEFAULTS["pulse"], neurons: int = DEFAULTS["neurons"],
                     trials: int = DEFAULTS["trials"], bins: int = DEFAULTS["bins"],
                     bin_size_s: float = 0.01, mean_rate_hz: float = 20.0) -> ChaoticRNNData:
    """Generate the dataset described in the module docstring; deterministic per seed."""
    _check(units, gain, pulse, neurons, trials, bins, bin_size_s, mean_rate_hz)
    rng_net, rng_trial, rng_spikes = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    j, b, w = draw_network(rng_net, units, neurons)

    x0 = rng_trial.normal(size=(trials, units))
    edge = input_edge(bins)
    onsets = rng_trial.integers(edge, bins - edge, size=trials).astype(np.int64)
    states = simulate(j, b, x0, onsets, pulse, bins, gain, bin_size_s)

    drive = np.tanh(states) @ w.T  # (trials, bins, neurons)
    c = math.log(mean_rate_hz) - math.log(float(np.exp(drive).mean()))
    rates = np.exp(drive + c) * bin_size_s
    spikes = rng_spikes.poisson(rates).astype(np.float32)
    return ChaoticRNNData(spikes=spikes, rates=rates.astype(np.float32),
                          states=states.astype(np.float32), input_times=onsets,
                          bin_size_s=float(bin_size_s))


def chaotic_rnn_dataset(seed: int = 0, cfg: DataConfig | None = None, **params) -> Dataset:
    """The chaotic-RNN data as a `Dataset` (true rates and input times), split like a user's."""
    d = make_chaotic_rnn(seed=seed, **params)
    pulsed = params.get("pulse", DEFAULTS["pulse"]) > 0  # pulse 0: no input, so no input times
    ds = from_array(
        d.spikes, layout="trials_time_neurons", truth=d.rates, cfg=cfg,
        source=f"built-in chaotic RNN (seed {seed})", bin_size_s=d.bin_size_s,
        true_input_times=d.input_times if pulsed else None,
    )  # fmt: skip
    ds.layout = MATLAB_LAYOUT  # as for the Lorenz data: what MATLAB users expect
    return ds
