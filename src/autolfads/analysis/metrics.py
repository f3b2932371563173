"""Metrics for inferred rates and inputs: R^2 against true rates, bits per spike, a smoothing
baseline, and how well inferred inputs find the true input times.

All arrays are trials x time x neurons, rates in expected counts per bin.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d

RATE_FLOOR = 1e-9  # keeps log(rate) finite where a model predicts (near) zero


def r2_rates(pred: np.ndarray, truth: np.ndarray) -> float:
    """Squared Pearson correlation over all entries, as the tutorial's compare_rates.m does."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred {np.shape(pred)} and truth {np.shape(truth)} differ in size")
    p, t = p - p.mean(), t - t.mean()
    denom = np.sqrt((p @ p) * (t @ t))
    return float((p @ t / denom) ** 2) if denom > 0 else float("nan")


def r2_pooled(pred: np.ndarray, truth: np.ndarray) -> float:
    """Coefficient of determination over all entries: 1 - SS_res / SS_tot, SS_tot about each
    neuron's own mean (so a model that only gets each neuron's mean rate right scores 0)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1, np.shape(pred)[-1])
    t = np.asarray(truth, dtype=np.float64).reshape(-1, np.shape(truth)[-1])
    if p.shape != t.shape:
        raise ValueError(f"pred {np.shape(pred)} and truth {np.shape(truth)} differ")
    ss_tot = float(((t - t.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((t - p) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


def r2_per_neuron_vector(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Coefficient of determination 1 - SS_res / SS_tot for each neuron (last axis); NaN for a
    neuron whose true rate is constant (nothing to explain)."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} differ")
    p, t = p.reshape(-1, p.shape[-1]), t.reshape(-1, t.shape[-1])
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def r2_per_neuron(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over neurons of the per-neuron coefficient of determination (neurons with a
    constant true rate left out; NaN when every one is)."""
    r2 = r2_per_neuron_vector(pred, truth)
    return float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan")


def _poisson_ll(rates: np.ndarray, spikes: np.ndarray) -> float:
    # log(y!) is left out: it is the same for model and null and cancels in bits per spike.
    r = np.maximum(rates, RATE_FLOOR)
    return float((spikes * np.log(r) - r).sum())


def bits_per_spike(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Neural Latents Benchmark bits/spike: (LL_model - LL_null) / (n_spikes * ln 2).

    The null model gives each neuron its mean count per bin over all trials and bins.
    """
    r = np.asarray(rates, dtype=np.float64)
    y = np.asarray(spikes, dtype=np.float64)
    if r.shape != y.shape:
        raise ValueError(f"rates {r.shape} and spikes {y.shape} differ")
    null = np.broadcast_to(y.reshape(-1, y.shape[-1]).mean(axis=0), y.shape)
    n_spikes = y.sum()
    if n_spikes == 0:
        return float("nan")
    return (_poisson_ll(r, y) - _poisson_ll(null, y)) / (n_spikes * np.log(2.0))


def variance_explained(means: np.ndarray, data: np.ndarray) -> float:
    """A continuous signal's counterpart of bits/spike: the share of the data's variance around
    each channel's mean (over the same trials and bins) that the inferred means explain, every
    channel weighted alike. 0: no better than the channels' means; negative: worse. (It is
    r2_per_neuron with the data in the truth's place.)"""
    return r2_per_neuron(means, data)


INPUT_TIME_TOLERANCE_BINS = 3


def input_peak_bins(inputs: np.ndarray) -> np.ndarray:
    """The bin at which each trial's inferred input deviates most from the average trial's:
    argmax over time of |u_k(t) - mean_j u_j(t)| (Euclidean over input dimensions).

    Subtracting the across-trial mean at each bin removes what every trial shares (the
    controller's start-of-trial transient, a condition-independent drive), so what is left is
    the trial's own event; inputs are trials x time x dims."""
    u = np.asarray(inputs, dtype=np.float64)
    if u.ndim != 3 or u.shape[2] == 0:
        raise ValueError(f"inferred inputs must be trials x time x dims, got {u.shape}")
    dev = np.linalg.norm(u - u.mean(axis=0, keepdims=True), axis=2)
    return dev.argmax(axis=1)


def input_time_accuracy(inputs: np.ndarray, true_times: np.ndarray,
                        tolerance: int = INPUT_TIME_TOLERANCE_BINS) -> float:
    """Fraction of trials whose inferred-input peak (input_peak_bins) lies within `tolerance`
    bins of the trial's true input time (0-based bins, one per trial)."""
    t = np.asarray(true_times).ravel()
    peaks = input_peak_bins(inputs)
    if peaks.shape != t.shape:
        raise ValueError(f"{len(peaks)} trials of inputs but {len(t)} true input times")
    return float(np.mean(np.abs(peaks - t) <= tolerance))


def gaussian_smooth(spikes: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Smooth along time (axis 1) with a normalised Gaussian; counts per bin out.

    Near the trial edges part of the kernel falls outside the trial, so each output is divided by
    the kernel mass inside the trial instead of being biased towards zero.
    """
    x = np.asarray(spikes, dtype=np.float64)
    if sigma_bins <= 0:
        return x.copy()
    half = max(1, int(np.ceil(4 * sigma_bins)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_bins) ** 2)
    k /= k.sum()
    num = convolve1d(x, k, axis=1, mode="constant", cval=0.0)
    mass = convolve1d(np.ones(x.shape[1]), k, mode="constant", cval=0.0)
    return num / mass.reshape(1, -1, *([1] * (x.ndim - 2)))


def smoothing_baseline(
    spikes: np.ndarray,
    truth: np.ndarray | None = None,
    sigmas: tuple[float, ...] = (1, 2, 3, 4, 6, 8),
) -> dict:
    """Single-trial Gaussian smoothing of spikes, the baseline LFADS should beat.

    With truth, the width is picked as the sigma with the best r2_rates against the truth. That is
    an oracle choice no real experiment could make, so the baseline is as strong as smoothing gets
    and comparing LFADS against it is conservative. Without truth the width is 2 bins.
    Returns {"sigma_bins", "rates", "r2_rates", "r2_per_neuron"} (R^2 values None without truth).
    """
    if truth is None:
        return {
            "sigma_bins": 2.0,
            "rates": gaussian_smooth(spikes, 2.0),
            "r2_rates": None,
            "r2_per_neuron": None,
        }
    if not sigmas:
        raise ValueError("smoothing_baseline: sigmas must not be empty")
    best: dict = {}
    for sigma in sigmas:
        rates = gaussian_smooth(spikes, sigma)
        r2 = r2_rates(rates, truth)
        if not best or r2 > best["r2_rates"]:
            best = {"sigma_bins": float(sigma), "rates": rates, "r2_rates": r2}
    best["r2_per_neuron"] = r2_per_neuron(best["rates"], truth)
    return best
