"""The Neural Latents Benchmark's metrics (Pei et al. 2021), computed as nlb_tools computes them,
so numbers compare with published AutoLFADS results (e.g. MC_Maze co-bps 0.336):

    co-bps    bits/spike of the held-out neurons' rates on the observed bins of test trials
    fp-bps    bits/spike of all neurons' rates on the forward-prediction bins of test trials
    psth R^2  R^2 of the condition-averaged rates against the true PSTHs, averaged over neurons
    vel R^2   ridge (alpha by 5-fold grid search over 1e-4 .. 1) from rates to behaviour, fitted
              on training trials and scored on test trials

Bits/spike: (LL(model) - LL(null)) / (n_spikes ln 2), the null giving each neuron its mean
count per bin over the scored trials and bins (analysis/metrics.bits_per_spike).
"""

from __future__ import annotations

import numpy as np

from autolfads.analysis.metrics import bits_per_spike


def co_bps(rates: np.ndarray, spikes: np.ndarray, heldout: np.ndarray, n_obs: int) -> float:
    """rates, spikes: test trials x all bins x all neurons; heldout: the held-out neurons;
    n_obs: the observed (not forward) bins."""
    return bits_per_spike(rates[:, :n_obs, heldout], spikes[:, :n_obs, heldout])


def fp_bps(rates: np.ndarray, spikes: np.ndarray, n_obs: int) -> float:
    """Bits/spike on the forward-prediction bins (after the first n_obs), every neuron."""
    return bits_per_spike(rates[:, n_obs:], spikes[:, n_obs:])


def psth_r2(psth: np.ndarray, rates: np.ndarray, cond_idx: list[np.ndarray]) -> float:
    """psth: conditions x time x neurons (true); rates: trials x time x neurons; cond_idx: the
    trials of each condition. R^2 over the stacked condition averages, mean over neurons."""
    true, pred = [], []
    for c, idx in enumerate(cond_idx):
        if len(idx):
            true.append(psth[c])
            pred.append(rates[idx].mean(axis=0))
    t, p = np.vstack(true), np.vstack(pred)
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    keep = ss_tot > 0
    return float(np.mean(1.0 - ss_res[keep] / ss_tot[keep]))


def velocity_r2(train_rates: np.ndarray, train_beh: np.ndarray, test_rates: np.ndarray,
                test_beh: np.ndarray) -> float:
    """Samples x features / samples x outputs (time-flattened trials)."""
    import warnings

    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV

    decoder = GridSearchCV(Ridge(), {"alpha": np.logspace(-4, 0, 9)})
    with warnings.catch_warnings():
        # Rates of neurons that share latents are nearly collinear, so the grid's smallest
        # penalties solve ill-conditioned systems; the search keeps whichever penalty
        # predicts best, and a user's console needs no scipy warning about the others.
        warnings.simplefilter("ignore", LinAlgWarning)
        decoder.fit(train_rates, train_beh)
    return float(decoder.score(test_rates, test_beh))


SMOOTHING_SIGMAS = (1.0, 2.0, 4.0, 8.0)  # bins


def smoothing_co_bps(spikes: np.ndarray, heldout: np.ndarray, n_obs: int, fit: np.ndarray,
                     pick: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """NLB's smoothing baseline for co-bps: the held-in spikes smoothed in time, a Poisson GLM
    per held-out neuron from them, fitted on the `fit` trials; the width is the one with the
    best co-bps on the `pick` trials; returns (co-bps on the `score` trials, width in bins)."""
    from sklearn.linear_model import PoissonRegressor

    from autolfads.analysis.metrics import gaussian_smooth

    heldin = np.setdiff1d(np.arange(spikes.shape[2]), heldout)
    obs = spikes[:, :n_obs]
    best = (-np.inf, 0.0, np.nan)
    for sigma in SMOOTHING_SIGMAS:
        smooth = gaussian_smooth(obs[:, :, heldin], sigma)
        mu, sd = smooth[fit].mean(axis=(0, 1)), smooth[fit].std(axis=(0, 1)) + 1e-9
        feats = (smooth - mu) / sd
        rates = np.empty(obs.shape[:2] + (len(heldout),))
        for j, n in enumerate(heldout):
            glm = PoissonRegressor(alpha=1e-3, max_iter=300)
            glm.fit(feats[fit].reshape(-1, len(heldin)), obs[fit][:, :, n].ravel())
            rates[:, :, j] = glm.predict(feats.reshape(-1, len(heldin))).reshape(obs.shape[:2])
        chosen = bits_per_spike(rates[pick], obs[pick][:, :, heldout])
        if chosen > best[0]:
            best = (chosen, sigma, bits_per_spike(rates[score], obs[score][:, :, heldout]))
    return float(best[2]), float(best[1])
