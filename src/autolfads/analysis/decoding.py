"""Behaviour decoding, the way the AutoLFADS tutorial analyses EMG: a linear (ridge) map from
the inferred means to each decode target (e.g. joint kinematics), scored by 10-fold
cross-validated R^2, next to the same map from Gaussian-smoothed data.

Recipe (decode_r2): keep the data's last T_b bins (the targets may cover fewer bins than the
data: they are aligned to the end), flatten trials x bins into samples, z-score every feature
and every target over all samples, then for each target the mean R^2 of Ridge(alpha=1) over 10
contiguous folds: exactly scikit-learn's cross_val_score(Ridge(alpha=1), X, y, cv=10).
"""

from __future__ import annotations

import numpy as np

from autolfads.analysis.metrics import gaussian_smooth

FOLDS = 10
ALPHA = 1.0
SMOOTHING_SIGMAS = (1, 2, 3, 4, 6, 8)  # bins; the baseline is the best of them


def _zscore(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def samples(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y): features (trials, T, F) over the targets' bins (trials, T_b, V), the last T_b,
    flattened to (trials * T_b, .) and z-scored."""
    tb = targets.shape[1]
    x = np.asarray(features, dtype=np.float64)[:, -tb:].reshape(-1, features.shape[-1])
    y = np.asarray(targets, dtype=np.float64).reshape(-1, targets.shape[-1])
    return _zscore(x), _zscore(y)


def decode_r2(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cross-validated R^2 of each target (V,) from the features (module docstring)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_score

    x, y = samples(features, targets)
    folds = min(FOLDS, len(x))
    # A constant target has no variance to explain: scikit-learn would score it 1.0 (or 0.0).
    return np.array([cross_val_score(Ridge(alpha=ALPHA), x, y[:, v], cv=folds).mean()
                     if np.ptp(y[:, v]) > 0 else np.nan for v in range(y.shape[1])])


def decoding_metrics(means: np.ndarray, data: np.ndarray, targets: np.ndarray
                     ) -> dict[str, float]:
    """metrics.json entries: decode_r2 (mean over targets) and decode_r2_<k> per target from the
    inferred means; the same from the best-smoothed data (decode_r2_smoothing*, its width).
    Constant targets are left out (data loading warns of them)."""
    model = decode_r2(means, targets)
    best, best_sigma = None, 0.0
    for sigma in SMOOTHING_SIGMAS:
        r2 = decode_r2(gaussian_smooth(data, sigma), targets)
        if best is None or np.nanmean(r2) > np.nanmean(best):
            best, best_sigma = r2, float(sigma)
    if np.isnan(model).all():  # every target constant (said at load): nothing to decode
        return {}
    m = {"decode_r2": float(np.nanmean(model)), "decode_r2_smoothing": float(np.nanmean(best)),
         "decode_smoothing_sigma_bins": best_sigma}
    for k in np.flatnonzero(np.isfinite(model)):
        m[f"decode_r2_{k}"] = float(model[k])
        m[f"decode_r2_smoothing_{k}"] = float(best[k])
    return m
