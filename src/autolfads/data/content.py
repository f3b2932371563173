"""What valid data may hide, said before training as warnings (never errors): held-out trials
without activity, trials all alike or silent, zero-padding, channels that are copies of each
other, outliers, too few channels, and a truth that cannot be scored as it is (on another scale
than the data, or varying only between channels)."""

from __future__ import annotations

import math

import numpy as np

from autolfads.data.validate import listed
from autolfads.data.writers import SCALE_FREE

FEW_VALID = 3  # fewer validation trials than this: noisy scores, said
OUTLIER_RATIO = 50.0  # see _outlier_warnings
ISOLATED = 10.0


def content_warnings(x: np.ndarray, behavior: np.ndarray | None, splits: dict[str, np.ndarray],
                     label: str, unit: str = "trial") -> list[str]:
    """Valid data on which some metric is undefined, said before training rather than found as
    a NaN after it. x: trials x time x neurons; splits: name -> trial indices; unit: what the
    trials are ("segment" for a continuous recording)."""
    out = []
    names = {"valid": "validation", "test": "test"}
    for sp, inds in splits.items():
        if sp in names and len(inds) and not x[inds].any():
            out.append(f"{label}: the {names[sp]} {unit}s hold no activity (every value is 0); "
                       "bits/spike on them is undefined")
    n_valid = len(splits.get("valid", ()))
    if 0 < n_valid < FEW_VALID:
        more = "a longer recording" if unit == "segment" else "the file's valid_inds"
        out.append(f"{label}: {n_valid} validation {unit}(s): early stopping (and PBT's "
                   "ranking) rest on them, so their scores will be noisy; give more with "
                   f"data.valid_every (smaller) or data.valid_fraction, or {more}")
    out += _trial_warnings(x, label) + _outlier_warnings(x, label) + _copies(x, label)
    if x.shape[-1] < MIN_CHANNELS:
        out.append(f"{label}: {x.shape[-1]} channel(s): LFADS infers the dynamics a population "
                   "shares; with so few channels there is little to share, and the rates come "
                   "close to smoothing each channel on its own")
    if unit == "trial":
        out += _padding_warnings(x, label)
    if behavior is not None:
        flat = behavior.reshape(-1, behavior.shape[-1])
        const = np.flatnonzero(np.ptp(flat, axis=0) == 0)
        if const.size:
            out.append(f"{label}: decode target(s) {listed(const)} (0-based) are constant; "
                       "there is nothing to decode in them, so they are left out of decoding")
    return out


MIN_CHANNELS = 3  # fewer: a population too small to share dynamics, said
FLAT_TRUTH = 0.01  # within-channel share of the truth's variance below which R^2 is not scored


def truth_checks(x: np.ndarray, truth: np.ndarray | None, label: str, what: str
                 ) -> tuple[list[str], dict[str, bool]]:
    """What data loading says of a truth, and the flags it records in the Dataset's meta for
    the scores (results.compute_metrics) and the report: truth_flat (R^2 against it is left
    out: constant, or varying only between channels) and truth_scale_free (on another scale
    than the data: correlations only). `what` names the truth in the messages."""
    if truth is None:
        return [], {}
    out: list[str] = []
    share = within_share(truth)
    flat = not share >= FLAT_TRUTH  # (NaN: a constant truth)
    if np.ptp(truth) == 0:
        out.append(f"{label}: truth has the same value everywhere; R^2 against it is undefined "
                   "and left out")
    elif flat:
        out.append(f"{label}: the true rates hardly vary within each channel (over time and "
                   f"trials: {100 * share:.2g}% of their variance), so R^2 against them would "
                   "score only each channel's mean: left out")
    other = truth_units(x, truth)
    if other:
        bigger = x.min() >= 0 and truth.mean() > 3 * x.mean()  # rates in spikes/s?
        hz = "; if it is in spikes/s, multiply it by the bin width in seconds" if bigger else ""
        out.append(f"{what}: on another scale than the data ({other}): it is compared by "
                   f"correlation only (r2_rates), not by 1 - SSE/SST{hz}")
    return out, {"truth_flat": flat, SCALE_FREE: bool(other)}


def within_share(truth: np.ndarray) -> float:
    """The share of the truth's variance that lies within channels (over time and trials), not
    between their means: a pooled R^2 of rates that differ only in their means is high on
    pure noise (0.995 in an audit). NaN for a constant truth. In float64, by blocks of rows (a
    float64 copy of a large truth would be gigabytes)."""
    flat = truth.reshape(-1, truth.shape[-1])
    ref = float(flat[0].mean(dtype=np.float64))  # one shift: sums of squares keep precision
    s1, s2 = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
    for i in range(0, len(flat), 1 << 16):
        block = flat[i:i + (1 << 16)].astype(np.float64) - ref
        s1 += block.sum(axis=0)
        s2 += (block * block).sum(axis=0)
    n = len(flat)
    means = s1 / n
    within = float(np.mean(s2 / n - means**2))
    total = float(s2.sum() / (n * flat.shape[1]) - means.mean() ** 2)
    return max(within, 0.0) / total if total > 0 else float("nan")


def truth_units(x: np.ndarray, truth: np.ndarray) -> str | None:
    """Why the true rates (means) are not in the data's units, or None. R^2 as 1 - SSE/SST then
    says nothing (audits: -39 for dF/F against spike rates); only correlations compare.
    Non-negative data: the means compare (a Poisson rate's mean is the counts' mean; spikes/s
    against counts per bin are a bin width apart). Signed data: the slope of the data on the
    truth (about 1 whatever the noise, when they share units) and the offset. A sample of the
    trials for large data."""
    step = max(1, x.size // 4_000_000)
    xs = x[::step].astype(np.float64).ravel()
    ts = truth[::step].astype(np.float64).ravel()
    xm, tm = float(xs.mean()), float(ts.mean())
    if xs.min() >= 0 and ts.min() >= -0.01 * max(float(ts.max()), 0.0):  # (an estimate's dips)
        if xm > 0 and tm > 0 and not 1 / 3 <= tm / xm <= 3:
            return f"its mean is {tm / xm:.2g} times the data's"
        return None
    tv = float(ts.var())
    if tv == 0:
        return None
    slope = float(np.mean((xs - xm) * (ts - tm))) / tv
    if not 1 / 3 <= slope <= 3 or abs(xm - tm) > 2 * math.sqrt(tv):
        return (f"the data change by {slope:.2g} per unit of it, and their means are {xm:.2g} "
                f"and {tm:.2g}")
    return None


def _trial_warnings(x: np.ndarray, label: str) -> list[str]:
    """Trials that carry nothing to model: all identical, or some without any activity."""
    flat = x.reshape(x.shape[0], -1)
    if x.shape[0] > 1 and np.array_equal(flat, np.broadcast_to(flat[:1], flat.shape)):
        return [f"{label}: every trial is the same: there is no trial-to-trial variability for "
                "LFADS to model, and held-out trials are copies of training trials, so their "
                "scores measure memory, not prediction"]
    empty = np.flatnonzero(~flat.any(axis=1))
    # Sparse counts leave some trials silent by chance (Poisson: exp(-mean count per trial)).
    chance = x.shape[0] * np.exp(-flat.sum() / x.shape[0]) if np.all(flat >= 0) else 0.0
    if 0 < empty.size < x.shape[0] and empty.size > 2 * chance + 1:
        return [f"{label}: {empty.size} of {x.shape[0]} trials hold no activity at all (trials "
                f"{listed(empty)}, 0-based): dropped trials or gaps in the recording?"]
    return []


def _padding_warnings(x: np.ndarray, label: str) -> list[str]:
    """Zero-padding: trials that end (or begin) with a run of bins in which every channel is
    exactly 0, which LFADS would model as real silence.
    - Trials of different lengths padded to one: a trial's end run is flagged when it is both
      improbable at those bins (n_trials * prod p_b < 1e-3, each bin's chance of silence from
      the trials where that bin is not part of an end run) and longer than 1.5 times any
      all-silent run inside a trial (so activity that fades at the end of every trial, and
      population-wide silences at other times, e.g. an oscillation's troughs or down states,
      are not padding).
    - The same bins empty in every trial (a recording cut short): flagged when the bins just
      before them are rarely silent, so that two such bins would not happen by chance."""
    silent = ~x.any(axis=2)  # trials x time
    n, t = silent.shape
    tail = np.cumprod(silent[:, ::-1], axis=1).sum(axis=1)
    head = np.cumprod(silent, axis=1).sum(axis=1)
    bins = np.arange(t)[None, :]
    inside = silent & (bins >= head[:, None]) & (bins < t - tail[:, None])
    longest, cur = 0, np.zeros(n, dtype=np.int64)
    for b in range(t):  # the longest all-silent run inside any trial
        cur = (cur + 1) * inside[:, b]
        longest = max(longest, int(cur.max()))
    # each bin's chance of silence in the trials where it is not part of an end run (padding
    # there would make padding look likely), at least 1/n; 1 where every trial's end run covers
    # it (the same bins empty in every trial: the second rule's)
    in_run = (bins < head[:, None]) | (bins >= t - tail[:, None])
    kept = (~in_run).sum(axis=0)
    p_b = np.where(kept > 0, (silent & ~in_run).sum(axis=0) / np.maximum(kept, 1), 1.0)
    log_p = np.log(np.maximum(p_b, 1.0 / n))
    cum = np.concatenate([[0.0], np.cumsum(log_p)])
    chance = np.minimum(cum[t] - cum[t - tail], cum[head])  # log p of each trial's longer run
    run = np.maximum(tail, head)
    flagged = np.flatnonzero((run >= 3) & (run < t) & (run > 1.5 * longest)
                             & (chance + math.log(n) < math.log(1e-3)))
    if flagged.size:
        i = int(flagged[np.argmax(run[flagged])])
        span = f"bins {t - tail[i]}-{t - 1}" if tail[i] >= head[i] else f"bins 0-{head[i] - 1}"
        return [f"{label}: {flagged.size} of {n} trials end or begin with a run of bins in which "
                f"every channel is exactly 0 (longest: trial {i}, {span}, 0-based), longer than "
                "any such silence inside a trial and unlikely by chance: zero-padding of trials "
                "of different lengths? LFADS would model it as real silence; cut the trials to a "
                "common length (e.g. the shortest) instead"]
    end, start = min(int(tail.min()), t - 1), min(int(head.min()), t - 1)
    if max(end, start) < 2:
        return []
    k = max(end, start)  # the bins just before (after) the common run: their chance of silence
    near = silent[:, max(0, t - end - k):t - end] if end >= start else silent[:, start:start + k]
    if near.size and near.mean() ** (2 * n) < 1e-6:
        span = f"last {end}" if end >= start else f"first {start}"
        return [f"{label}: the {span} bins are exactly 0 in every trial and channel, while the "
                "bins beside them are rarely silent: padding, or bins outside the recording? "
                "If so, cut them off: LFADS would model them as real silence"]
    return []


SAME_COUNTS, SAME_SIGNAL = 0.8, 0.9999  # correlations above which two channels are copies
MAX_PAIRWISE = 2000  # channels; beyond, the correlation matrix is not worth its time here
SMALL_COUNTS = 30  # spikes per bin (99th percentile) up to which whole numbers are counts here


def _copies(x: np.ndarray, label: str) -> list[str]:
    """Channels that are (nearly) copies of each other, e.g. one neuron sorted twice: with a copy
    in its input LFADS can pass a neuron's own spikes through (coordinated dropout masks only
    the channel itself), so its rates and bits/spike look better than the dynamics it found.
    Correlated after each channel's mean over trials at each bin is removed (a shared stimulus
    response falls to ~0.1, a copy stays: 0.95 for 90% shared spikes). Spike counts (small
    non-negative whole numbers): above SAME_COUNTS; anything else (digitised LFP or EMG, raw
    fluorescence, continuous signals, which can be that correlated by nature): exact copies."""
    if x.shape[-1] > MAX_PAIRWISE or x.shape[-1] < 2:
        return []
    psth = x.mean(axis=0, dtype=np.float64)  # time x channels
    per = max(1, min(20_000, max(2_000, 10_000_000 // x.shape[-1])) // x.shape[1])
    pick = np.random.default_rng(0).permutation(len(x))[:per]  # ~80 MB at most
    sample = x[np.sort(pick)]
    rows = (sample - psth).reshape(-1, x.shape[-1])
    raw = sample.reshape(-1, x.shape[-1])
    counts = (raw.min() >= 0 and np.array_equal(raw, np.round(raw))
              and float(np.quantile(raw, 0.99)) <= SMALL_COUNTS)
    sd = rows.std(axis=0)
    live = np.flatnonzero(sd > 0)
    if live.size < 2:
        return []
    z = (rows[:, live] - rows[:, live].mean(axis=0)) / sd[live]
    corr = np.triu(z.T @ z / len(rows), k=1)
    a, b = np.nonzero(corr > (SAME_COUNTS if counts else SAME_SIGNAL))
    if not a.size:
        return []
    shown = ", ".join(f"{live[i]} and {live[j]} (r = {corr[i, j]:.2f})"
                      for i, j in list(zip(a, b, strict=True))[:4])
    more = f" and {a.size - 4} more" if a.size > 4 else ""
    return [f"{label}: {a.size} pair(s) of channels are (nearly) copies of each other (0-based: "
            f"{shown}{more}; correlations of what varies from trial to trial): a neuron sorted "
            "twice, or a channel saved twice? LFADS can pass one copy's values to the other, so "
            "rates and bits/spike would look better than the dynamics it found; keep one channel "
            "of each pair"]


def _outlier_warnings(x: np.ndarray, label: str) -> list[str]:
    """A value far outside the rest of its channel (a glitch, or a missing-data code such as
    65535): one such value dominates the channel's fit in every trial. Far: more than
    OUTLIER_RATIO times the channel's 99th percentile distance from its median (at least 1 for
    counts; for a channel that is almost constant, than the channels' median largest distance),
    and isolated: over ISOLATED times the channel's next largest distance, which real events in
    sparse or heavy-tailed data are not."""
    flat = x.reshape(-1, x.shape[-1])
    rows = flat if len(flat) <= 20_000 else flat[np.random.default_rng(0).choice(
        len(flat), 20_000, replace=False)]  # robust statistics need no more
    med = np.median(rows, axis=0)
    ref = np.quantile(np.abs(rows - med), 0.99, axis=0)
    if np.array_equal(rows, np.round(rows)):
        ref = np.maximum(ref, 1.0)
    top = np.maximum(flat.max(axis=0) - med, med - flat.min(axis=0))
    ref = np.where(ref > 0, ref, np.median(top))
    bad, where = [], {}
    for c in np.flatnonzero((ref > 0) & (top > OUTLIER_RATIO * ref)):
        dev = np.abs(x[..., c] - med[c])
        below = dev[dev < top[c]]
        if top[c] > ISOLATED * (below.max() if below.size else 0.0):
            bad.append(c)
            where[c] = np.unravel_index(int(np.argmax(dev)), x.shape[:2])
    if not bad:
        return []
    c = max(bad, key=lambda k: top[k] / ref[k])
    trial, t = where[c]
    return [f"{label}: channel(s) {listed(np.array(bad))} (0-based) hold a value far outside "
            f"the rest (channel {c}: {x[trial, t, c]:g} at trial {trial}, bin {t}, 0-based; "
            f"{top[c] / ref[c]:.0f} times its typical spread): an outlier or a missing-data "
            "code? One such value dominates the channel's fit in every trial: remove or replace "
            "it"]


def trials_look_like_neurons(x: np.ndarray) -> bool:
    """Spike counts read as trials x time x neurons whose first axis may hold the neurons:
    neurons differ in their mean rates far more than trials do, so the first axis's means
    varying much more than the last's (on a log scale) says the axes are swapped. Only for
    non-negative whole numbers, where a mean is a rate (z-scored or normalised signals have
    channel means that say nothing)."""
    if x.size == 0 or (x < 0).any() or not np.array_equal(x, np.round(x)):
        return False

    def spread(means: np.ndarray) -> float:
        return float(np.log(np.maximum(means, 1e-3)).std())

    return spread(x.mean(axis=(1, 2))) > 2 * spread(x.mean(axis=(0, 1)))
