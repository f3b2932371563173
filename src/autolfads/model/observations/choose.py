"""Which observation model fits the data: `auto`'s rule, and the checks an explicit choice must
pass. Each problem is one UserInputError line that says where and what to use instead.

    any negative value                     -> gaussian
    whole numbers far from zero, regular   -> gaussian (a digitised signal on a baseline)
    non-negative whole numbers             -> poisson (spike counts)
    non-negative, continuous, exact zeros  -> zero_inflated_gamma (e.g. deconvolved calcium)
    positive and continuous                -> gamma (e.g. rectified EMG)
"""

from __future__ import annotations

import numpy as np

from autolfads.data.validate import listed
from autolfads.errors import UserInputError

LARGE_COUNT = 255  # more spikes than this in one bin suggests a digitised signal, not counts
LARGE_STEP = 1000  # counts all multiples of this: a scale factor, not a bin width (1/1 ms)
# Whole numbers this far from zero and this regular are not spike counts: a count's variance
# is about its mean (Fano factor ~1; very regular neurons ~0.3), while an int16 signal on a
# baseline of 200 had a variance 0.05 of its mean in an audit, and as poisson fitted R^2 0.06
# against 0.94 as gaussian. (Very regular neurons at 20+ spikes per bin would read so too.)
MIN_FANO, BIG_COUNTS = 0.2, 20.0
# Spike counts of at least this many in every bin of every neuron do not happen at LFADS's bins:
# raw fluorescence (a baseline of 500-3000), uint16 LFP around 32768 (Fano factors 2-13).
NEVER_BELOW = 100.0
ALTERNATIVES = ("model.observation=gamma (positive values), zero_inflated_gamma (non-negative, "
                "many exact zeros), gaussian (any sign), or auto")


# Counts saved through a float computation (a division and a multiplication back, a sum of
# weights) come within rounding of whole numbers, not onto them: they are counts still. Relative
# to the value, and far below the data scales check accepts (TINY), so a small continuous signal
# is never taken for counts.
WHOLE_TOL = 1e-6


# Positive data whose channels vary by less than this fraction of their mean is modelled as
# gaussian: gamma's shape would have to exceed 1/CV^2 = 100 (it is capped at e^12), and the
# signal is a small wobble on a baseline, which the Gaussian describes. Measured (audit, before
# gamma's encoder input was centred): values 1000 + signal (sd 1) gave R^2 0.000 as gamma, 0.971
# as gaussian.
MIN_GAMMA_CV = 0.1


def _where(values: np.ndarray, bad: np.ndarray) -> str:
    first = int(np.flatnonzero(bad)[0])
    i, t, n = (int(v) for v in np.unravel_index(first, values.shape))
    return (f"{int(bad.sum())} of them, first {values.flat[first]:.9g} at trial {i}, bin {t}, "
            f"channel {n} (0-based, your trial order)")


def _off_whole(values: np.ndarray) -> np.ndarray:
    """Where values are not whole numbers, within WHOLE_TOL. Data whose every value rounds to 0
    is a tiny continuous signal, not counts: all of it is off."""
    rounded = np.round(values)
    if values.any() and not rounded.any():
        return np.ones(values.shape, dtype=bool)
    return np.abs(values - rounded) > WHOLE_TOL * np.maximum(1.0, np.abs(values))


def choose(values: np.ndarray) -> tuple[str, str]:
    """(model name, why) for data values (trials x time x channels), by the rule above."""
    lo, hi = float(values.min()), float(values.max())
    zeros = int((values == 0).sum())
    # (counts whose zeros came out of a float computation as -1e-17 are counts still)
    whole = not _off_whole(values).any()
    if lo < 0 and (np.round(lo) < 0 or not whole):
        return "gaussian", f"values can be negative: min {lo:.2g}, max {hi:.2g}"
    if whole:
        flat = values.reshape(-1, values.shape[-1])
        mean = flat.mean(0)
        fano = float(np.median(flat.var(0) / np.maximum(mean, 1e-12)))
        if lo >= NEVER_BELOW or (float(np.median(mean)) >= BIG_COUNTS and fano < MIN_FANO):
            how = (f"no bin holds fewer than {lo:g}" if lo >= NEVER_BELOW else
                   f"around {float(np.median(mean)):.3g}, each channel's variance is {fano:.2g} "
                   "of its mean (median Fano factor; a spike count's is about 1)")
            return "gaussian", (f"values are whole numbers but not spike counts: {how}: a "
                                "digitised signal on a baseline; if these are counts, set "
                                "model.observation=poisson")
        off = float(np.abs(values - np.round(values)).max())
        within = f" to within {off:.1g}" if off else ""
        why = f"values are whole numbers{within}, spike counts: max {hi:g} per bin"
        if hi > LARGE_COUNT or lo >= BIG_COUNTS:  # digitised signals are whole numbers too
            why += ("; if these are not spike counts (e.g. digitised EMG), set "
                    "model.observation=gamma or gaussian")
        return "poisson", why
    if zeros:
        positive = float(values[values > 0].min())
        return "zero_inflated_gamma", (
            f"values are continuous and non-negative with {100 * zeros / values.size:.0f}% exact "
            f"zeros: smallest non-zero {positive:.2g}, max {hi:.2g}")
    flat = values.reshape(-1, values.shape[-1])
    cv = float(np.median(flat.std(0) / flat.mean(0)))
    if cv < MIN_GAMMA_CV:  # e.g. a signal riding on a large baseline: gamma cannot be that narrow
        return "gaussian", (f"values are positive but sit far from zero: each channel's spread is "
                            f"{cv:.2g} of its mean (median), too narrow for gamma")
    return "gamma", f"values are continuous and positive: 0 zeros, min {lo:.1e}, max {hi:.2g}"


def check(name: str, values: np.ndarray, what: str) -> None:
    """Raise UserInputError if the data cannot come from observation model `name`."""
    if not values.any():
        raise UserInputError(f"{what}: every value is zero; there is no activity to model")
    _check_scale(name, values, what)
    # counts within rounding of 0 (-1e-17) are rounded, not refused
    negative = np.round(values) < 0 if name == "poisson" else values < 0
    if name in ("poisson", "gamma", "zero_inflated_gamma") and negative.any():
        raise UserInputError(f"{what}: negative values ({_where(values, negative)}); the {name} "
                             "model needs non-negative data; use model.observation=gaussian "
                             "for signed signals (or auto)")
    if name == "poisson":
        frac = _off_whole(values)
        if frac.any():
            raise UserInputError(f"{what}: non-integer values ({_where(values, frac)}); the "
                                 f"poisson model needs spike counts per bin; for continuous data "
                                 f"use {ALTERNATIVES}")
    elif name == "gamma" and (values == 0).any():
        raise UserInputError(f"{what}: exact zeros ({_where(values, values == 0)}); the gamma "
                             "model needs positive values; use model.observation="
                             "zero_inflated_gamma for data with zeros (or auto)")
    elif name == "zero_inflated_gamma":
        _check_channels(values, what, (values > 0).any(axis=(0, 1)), "is zero in every bin")
    if name in ("gamma", "gaussian"):  # a spread of zero: the likelihood grows without bound
        flat = values.reshape(-1, values.shape[-1])
        _check_channels(values, what, flat.max(0) > flat.min(0), "has the same value in every bin")


def check_training(name: str, train: np.ndarray, values: np.ndarray, what: str) -> list[str]:
    """The training trials (train) against all trials (values), both trials x time x channels:
    a continuous channel flat in training but not elsewhere is an error (its learnt spread would
    be ~0, and the validation cost explodes); a channel silent in training only gets rates near
    zero, which a warning says. Returns warning lines."""
    flat = train.reshape(-1, train.shape[-1])
    if name in ("gamma", "gaussian"):
        bad = np.flatnonzero(flat.max(0) == flat.min(0))
        if bad.size:
            shown = listed(bad)
            raise UserInputError(
                f"{what}: {bad.size} channel(s) have the same value in every training trial "
                f"(0-based: {shown}) but vary in the validation/test trials; the {name} model "
                "cannot learn their spread; remove them, or mix the trials (data.split=random)")
        return []
    silent = np.flatnonzero(~flat.any(0) & values.reshape(-1, values.shape[-1]).any(0))
    if not silent.size:
        return []
    shown = listed(silent)
    noun = "neurons never spike" if name == "poisson" else "channels have no events"
    return [f"warning: {silent.size} {noun} in the training trials, only in others (0-based: "
            f"{shown}); the model learns rates near zero for them"]


# Training runs in float32: values far from order 1 lose precision or overflow. Measured on
# synthetic EMG (gamma) scaled by 1e-7 .. 1e8: the fit is the same for typical values from ~5e-6
# to ~1e9, worse at ~5e-7, lost at ~5e-8; values of 1e20 turn the cost to NaN.
TINY, HUGE = 1e-6, 1e10
MAX_SPREAD = 1e6  # largest / typical beyond this: no one factor brings the data to order 1


def _check_scale(name: str, values: np.ndarray, what: str) -> None:
    mags = np.abs(values[values != 0])
    typical, top = float(np.median(mags)), float(mags.max())
    if top <= HUGE and (name == "poisson" or typical >= TINY):
        return
    if top / typical > MAX_SPREAD:
        big = np.abs(values) == top
        raise UserInputError(f"{what}: values span {typical:.1g} (typical) to {top:.2g} "
                             f"({_where(values, big)}); an outlier or a missing-data code? "
                             "Remove it, then rescale the data to order 1 if needed")
    too = "large" if top > HUGE else "small"
    factor = 10.0 ** -np.ceil(np.log10(top)) if too == "large" else \
        10.0 ** -round(np.log10(typical))
    raise UserInputError(
        f"{what}: values of order {typical:.1g} (largest {top:.2g}) are too {too} to train on "
        f"in float32; rescale the data to order 1 (e.g. multiply it by {factor:g}); the "
        "outputs come back in the new units")


def _check_channels(values: np.ndarray, what: str, ok: np.ndarray, problem: str) -> None:
    if ok.all():
        return
    bad = np.flatnonzero(~ok)
    shown = listed(bad)
    raise UserInputError(f"{what}: {len(bad)} channel(s) {problem} (0-based: {shown}); the model "
                         "cannot fit a distribution to them; remove those channels")


SPARSE_COUNTS = 0.01  # spikes per bin per neuron below which a warning says what to expect
FEW_SPIKES_TOTAL = 5  # a neuron with fewer spikes than this in all the data: said


def _scaled_counts(values: np.ndarray) -> list[str]:
    """Spike counts divided by a bin width that is not 1/N (spikes/s at 30 ms bins) are not
    whole numbers, but every non-zero value is a whole multiple of the smallest one, and few of
    them (a quantised signal's steps run to thousands)."""
    positive = values[values > 0]
    if positive.size < 100 or (values < 0).any():
        return []
    step = float(positive.min())
    # Whole numbers are counts already (the poisson checks speak of them); spikes/s at bins of
    # 1 s or less step by 1 or more (a quantised signal's steps, 0.01 mV or 1/255, are small),
    # and by 1000 / a whole number of ms (an ADC's 2.44 uV is 409.8 ms: not a bin).
    bin_ms = 1000.0 / step
    if step <= 1 or step == round(step) or abs(bin_ms - round(bin_ms)) > 1e-3:
        return []
    multiples = positive / step
    if np.abs(multiples - np.round(multiples)).max() > 1e-4 or np.median(multiples) > 20 \
            or multiples.max() > 1000:
        return []
    return [f"warning: every non-zero value is a whole multiple of {step:.6g}: spike counts "
            f"divided by a bin width ({1 / step:.6g} s, as spikes/s)? Give counts per bin "
            f"(multiply by {1 / step:.6g}) so they are modelled as spike counts (poisson)"]


def warnings(name: str, values: np.ndarray) -> list[str]:
    """Data a model can fit but that will not show much dynamics: one line each, said before
    training so that a poor result is not a surprise."""
    out = []
    if name == "gaussian" and np.array_equal(values, np.round(values)):
        neg = values < 0
        if 0 < neg.mean() < 0.05:  # counts with a few negative codes, e.g. -1 for missing
            out.append(f"warning: whole numbers with a few negative values ({_where(values, neg)})"
                       "; if these are spike counts and the negatives mark missing data, remove "
                       "them (the data is modelled as gaussian because of them)")
    if name == "zero_inflated_gamma":
        flat = values.reshape(-1, values.shape[-1])
        events = np.where(flat > 0, flat, np.nan)
        same = np.flatnonzero(np.nanmax(events, 0) == np.nanmin(events, 0))
        if same.size:
            out.append(f"warning: {same.size} channel(s) have events of one size only (0-based: "
                       f"{listed(same)}); if the data is binary "
                       "(event or not), give it as 0/1 counts so it is modelled as poisson")
    if name != "poisson":
        return out + _scaled_counts(values)
    whole = values[values > 0]
    step = int(np.gcd.reduce(np.round(whole).astype(np.int64))) if whole.size else 1
    if step > 1:
        fix = (f"divide by {step} to get counts" if step >= LARGE_STEP else
               "convert them to counts (multiply by the bin width in seconds)")
        out.append(f"warning: every count is a multiple of {step}; if these are rates (e.g. "
                   f"spikes/s) or scaled values rather than counts per bin, {fix}")
    per_neuron = values.sum(axis=(0, 1))
    silent = np.flatnonzero(per_neuron == 0)
    if silent.size:
        shown = listed(silent)
        out.append(f"warning: {silent.size} of {values.shape[2]} neurons never spike (0-based: "
                   f"{shown}); they are kept, with rates near zero")
    rare = np.flatnonzero((per_neuron > 0) & (per_neuron < FEW_SPIKES_TOTAL))
    if rare.size:
        out.append(f"warning: {rare.size} of {values.shape[2]} neurons spike fewer than "
                   f"{FEW_SPIKES_TOTAL} times in all the data (0-based: {listed(rare)}): too few "
                   "to show dynamics; they are kept, with rates near their means")
    mean = float(values.mean())
    if mean < SPARSE_COUNTS:
        out.append(f"warning: very sparse data, {mean:.2g} spikes per bin per neuron on average: "
                   "expect rates close to each neuron's mean; larger bins carry more signal")
    return out


def resolve(requested: str, values: np.ndarray, what: str) -> tuple[str, str]:
    """(model, why): `auto`'s choice, or the requested model once the data passes its checks."""
    name, why = choose(values) if requested == "auto" else (requested, "as configured")
    check(name, values, what)
    return name, why
