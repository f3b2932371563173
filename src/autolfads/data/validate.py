"""Checks shared by every reader (and `from_array`): each failure is one `UserInputError` line.

`what` is always a prefix like "data.mat: variable 'data'" so the message names the file and the
variable; the rest of the message says what is wrong and how to fix it.
"""

from __future__ import annotations

import math

import numpy as np

from autolfads.data.dataset import AXES
from autolfads.errors import UserInputError

MIN_TRIALS = 10
FEW_VALID = 3  # fewer validation trials than this: noisy scores, said
OUTLIER_RATIO = 50.0  # see _outlier_warnings
ISOLATED = 10.0
MIN_BINS = 5  # fewer bins per trial leave no dynamics to infer (and are usually a wrong layout)
LAYOUT_HINT = "(CLI --layout, config data.layout, from_array(layout=...))"


def parse_layout(layout: str, what: str) -> str:
    parts = str(layout).strip().lower().split("_")
    # Two axes name a continuous recording's order (data/segments.py), e.g. neurons_time.
    if sorted(parts) not in (sorted(AXES), ["neurons", "time"]):
        raise UserInputError(
            f"{what}: invalid layout '{layout}'; use the three axis names trials, time, neurons "
            f"joined by '_' in the array's axis order, e.g. neurons_time_trials (neurons_time or "
            f"time_neurons for one continuous recording) {LAYOUT_HINT}"
        )
    return "_".join(parts)


def listed(indices: np.ndarray, k: int = 5) -> str:
    """The first k indices, for a message: '0, 3, 7 ...'."""
    return ", ".join(str(int(i)) for i in indices[:k]) + (" ..." if len(indices) > k else "")


def _index(flat: int, shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + ")"


def as_numeric(arr: object, what: str) -> np.ndarray:
    """Return a real numeric array (bool -> 0/1); anything else is an error."""
    if hasattr(arr, "tocoo"):  # a scipy.sparse matrix, as scipy reads MATLAB's sparse()
        raise UserInputError(f"{what}: is a sparse matrix; save it as a full array (full(...)) "
                             "in MATLAB")
    if type(arr).__name__ in ("MatlabOpaque", "MatlabFunction"):  # scipy's MATLAB objects
        raise UserInputError(f"{what}: is a MATLAB object (a table, string, function, ...), not "
                             "an array; save its numbers as a numeric array (e.g. "
                             "table2array(T))")
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind not in "iuf":
        kind = {"O": "a cell/object array (e.g. trials of different lengths)", "U": "text",
                "S": "text", "V": "a struct/record", "c": "complex-valued"
                }.get(a.dtype.kind, f"of type {a.dtype}")
        if a.dtype.names:  # a MATLAB struct
            raise UserInputError(f"{what}: is a struct with fields {', '.join(a.dtype.names)}; "
                                 "name the field that holds the data, e.g. --set "
                                 f"data.variable=S.{a.dtype.names[0]} for a struct S")
        fix = {"O": "; save one numeric array with every trial cut to the same number of bins",
               "V": "; save the field that holds the data as its own variable",
               "c": "; save the real values (e.g. abs or real) instead"}.get(a.dtype.kind, "")
        raise UserInputError(f"{what}: is {kind}; expected a real numeric array (spike counts "
                             f"or a continuous signal){fix}")
    return a


def check_3d(a: np.ndarray, what: str, layout: str) -> None:
    expected = " x ".join(layout.split("_"))
    if a.size == 0:
        raise UserInputError(
            f"{what}: is empty (shape {tuple(a.shape)}); expected a 3-D array {expected} with "
            "at least one element on every axis"
        )
    if a.ndim == 3 and "trials" not in layout:
        raise UserInputError(f"{what}: layout {layout} names one continuous recording (2-D), but "
                             f"the array has 3 axes {tuple(a.shape)}; give all three axes, e.g. "
                             f"neurons_time_trials {LAYOUT_HINT}")
    if a.ndim != 3:
        hint = ("; a 1-D array is one channel: give it as a 2-D recording (one channel x "
                "time) or neurons x time x trials") if a.ndim == 1 else ""
        raise UserInputError(
            f"{what}: expected a 3-D array {expected}, found shape {tuple(a.shape)}{hint}"
        )


def check_bins(shape: tuple[int, ...], layout: str, what: str) -> None:
    axes = layout.split("_")
    n = shape[axes.index("time")]
    if n < MIN_BINS:
        raise UserInputError(
            f"{what}: only {n} bin{'' if n == 1 else 's'} per trial (shape {tuple(shape)} read "
            f"as {' x '.join(axes)}); "
            f"LFADS infers dynamics over time and needs at least {MIN_BINS} bins; if another "
            f"axis holds time, give the axis order {LAYOUT_HINT}")


def check_trials(shape: tuple[int, ...], layout: str, what: str, can_relayout: bool) -> None:
    """At least MIN_TRIALS trials; a tiny trials axis next to a big one is probably a transpose."""
    axes = layout.split("_")
    t_ax = axes.index("trials")
    n = shape[t_ax]
    if n >= MIN_TRIALS:
        return
    big = int(np.argmax(shape))
    fixed = list(axes)
    fixed[t_ax], fixed[big] = fixed[big], fixed[t_ax]
    # Suggest the swap only where it reads as data: the trials axis big, and enough bins left.
    if can_relayout and shape[big] >= MIN_TRIALS and shape[fixed.index("time")] >= MIN_BINS:
        raise UserInputError(
            f"{what}: shape {tuple(shape)} read as {' x '.join(axes)} gives only {n} trials "
            f"(LFADS needs at least {MIN_TRIALS}); if axis {big} holds the trials, pass "
            f"--layout {'_'.join(fixed)} (config data.layout); one long recording without "
            "trials: give it as a 2-D array, channels x time"
        )
    raise UserInputError(
        f"{what}: only {n} trials (shape {tuple(shape)} read as {' x '.join(axes)}); "
        f"LFADS needs at least {MIN_TRIALS} trials to train and validate"
    )


def _check_finite(a: np.ndarray, what: str) -> None:
    if a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UserInputError(
            f"{what}: {int(bad.sum())} NaN/Inf value(s), first {a.flat[first]} at index "
            f"{_index(first, a.shape)} (0-based); remove or replace them (values must be finite)"
        )


def check_values(a: np.ndarray, what: str) -> None:
    """Finite values. What else the values must be (whole counts, positive, ...) depends on the
    observation model, which model/observations/choose.py checks once the data is read."""
    _check_finite(a, what)


def check_rates(a: np.ndarray, what: str) -> None:
    """True rates or means: finite (a signed signal's true mean may be negative)."""
    _check_finite(a, what)


def check_scalar(value: object, what: str) -> float:
    a = np.asarray(value)
    if a.dtype.kind not in "iuf" or a.size != 1 or not np.isfinite(a).all() or a.ravel()[0] <= 0:
        shown = (a.ravel()[:3].tolist() if a.dtype.kind in "iufb"
                 else f"text '{a.ravel()[0]}'" if a.dtype.kind in "US" and a.size
                 else "a non-numeric value")
        raise UserInputError(f"{what}: expected one positive number, found {shown}")
    return float(a.ravel()[0])


def _as_index_vector(value: object, what: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind == "f" and a.size and (
        not np.isfinite(a).all() or (a != np.round(a)).any()
    ):
        raise UserInputError(f"{what}: trial indices must be whole numbers")
    if a.dtype.kind not in "iuf" or (a.ndim > 1 and sorted(a.shape)[-2] > 1):
        raise UserInputError(f"{what}: expected a vector of trial indices, found shape {a.shape}")
    return a.ravel().astype(np.int64)


def resolve_inds(train: object, valid: object, n: int, what: str, test: object = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a user-supplied split (train, valid and optionally test) and return it 0-based.

    MATLAB writes 1-based indices; a split that is exactly a partition of 1..n (so 0 is absent and
    n is present) is taken as 1-based, one that is a partition of 0..n-1 as 0-based.
    """
    if (train is None) != (valid is None):
        have, miss = ("train_inds", "valid_inds") if valid is None else ("valid_inds", "train_inds")
        raise UserInputError(f"{what}: has {have} but no {miss}; provide both or neither")
    tr = _as_index_vector(_mask_to_inds(train, n), f"{what}: train_inds")
    va = _as_index_vector(_mask_to_inds(valid, n), f"{what}: valid_inds")
    te = (np.zeros(0, dtype=np.int64) if test is None
          else _as_index_vector(_mask_to_inds(test, n), f"{what}: test_inds"))
    both = np.concatenate([tr, va, te])
    ordered = np.sort(both)
    if np.array_equal(ordered, np.arange(n)):
        base = 0
    elif np.array_equal(ordered, np.arange(1, n + 1)):
        base = 1
    else:
        names = "train_inds/valid_inds" + ("/test_inds" if len(te) else "")
        raise UserInputError(
            f"{what}: {names} must together list each of the {n} trials exactly "
            f"once (0..{n - 1}, or 1..{n} from MATLAB); {_partition_problem(both, n)}"
        )
    if len(tr) == 0 or len(va) == 0:
        empty = "train_inds" if len(tr) == 0 else "valid_inds"
        raise UserInputError(f"{what}: {empty} is empty; both splits need at least one trial")
    return tr - base, va - base, te - base


def resolve_test_inds(test: object, n: int, what: str, one_based: bool) -> tuple[np.ndarray, str]:
    """A test_inds list given without train_inds/valid_inds, 0-based, and how its base was
    decided: 0 in the list means 0-based, n means 1-based; otherwise the file's convention
    (`one_based`: MATLAB's), which the returned note says."""
    te = _as_index_vector(_mask_to_inds(test, n), f"{what}: test_inds")
    if te.size and te.min() <= 0:
        base, note = 0, ""
    elif te.size and te.max() >= n:
        base, note = 1, ""
    else:
        base = int(one_based)
        note = (f"{what}: test_inds read as {'1-based (MATLAB)' if one_based else '0-based'} "
                "trial numbers")
    te = np.unique(te) - base
    if te.size and (te.min() < 0 or te.max() >= n):
        raise UserInputError(f"{what}: test_inds: index {te[(te < 0) | (te >= n)][0] + base} is "
                             f"out of range for {n} trials")
    if n - te.size < MIN_TRIALS:
        raise UserInputError(f"{what}: test_inds leaves {n - te.size} of {n} trials for "
                             f"training and validation; LFADS needs at least {MIN_TRIALS}")
    return te, note


def _mask_to_inds(value: object, n: int) -> object:
    """A logical mask over the n trials (MATLAB's habit: train_inds = ~is_valid) -> its 0-based
    indices. A 0/1 vector of length n >= 3 cannot be a list of distinct trial numbers, so
    reading it as a mask takes nothing valid away."""
    a = np.asarray(value)
    if a.size == n and n >= 3 and (a.dtype == bool or (
            a.dtype.kind in "iuf" and np.isin(a, (0, 1)).all())):
        return np.flatnonzero(a.ravel())
    return value


def _partition_problem(both: np.ndarray, n: int) -> str:
    values, counts = np.unique(both, return_counts=True)
    if (counts > 1).any():
        return f"index {values[counts > 1][0]} appears {counts[counts > 1][0]} times"
    base = 0 if both.size and both.min() <= 0 else 1  # the likelier convention, for the message
    outside = both[(both < base) | (both >= base + n)]
    if outside.size:
        return f"index {outside[0]} is out of range for {n} trials"
    missing = np.setdiff1d(np.arange(base, base + n), both)
    return f"trial {missing[0]} is in neither list ({len(missing)} missing)"


def check_conditions(conditions: object, n: int, what: str) -> np.ndarray | None:
    if conditions is None:
        return None
    c = np.asarray(conditions)
    if c.dtype.kind == "O":  # a MATLAB cell array of labels: one 1-element array per cell
        cells = [np.asarray(e).ravel() for e in c.ravel()]
        if all(e.size == 1 and e.dtype.kind in "iufUS" for e in cells):
            c = np.array([e[0] for e in cells])
    if c.dtype.kind in "OV" or c.size != n:
        raise UserInputError(
            f"{what}: expected one numeric or text label per trial ({n}), found shape {c.shape}"
        )
    c = c.ravel()
    if c.dtype.kind == "f" and not np.isfinite(c).all():
        bad = np.flatnonzero(~np.isfinite(c))
        raise UserInputError(f"{what}: {bad.size} trial(s) without a label (NaN), first trial "
                             f"{int(bad[0])} (0-based); give every trial a label, e.g. one "
                             "number for 'unknown'")
    return c


def check_ext_input(ext: object, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    if ext is None:
        return None
    e = as_numeric(ext, what)
    if e.ndim != 3 or e.shape[:2] != shape[:2]:
        raise UserInputError(
            f"{what}: expected trials x time x inputs with {shape[0]} trials and {shape[1]} bins, "
            f"found shape {e.shape}"
        )
    if e.dtype.kind == "f" and not np.isfinite(e).all():
        raise UserInputError(f"{what}: contains NaN/Inf; external inputs must be finite")
    return np.ascontiguousarray(e, dtype=np.float32)


def check_input_times(times: object, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    if times is None:
        return None
    t = as_numeric(times, what).ravel()
    if t.size != shape[0] or not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
        raise UserInputError(f"{what}: expected one whole bin number per trial ({shape[0]})")
    if t.size and (t.min() < 0 or t.max() >= shape[1]):
        raise UserInputError(f"{what}: bins must lie in 0..{shape[1] - 1} (0-based)")
    return t.astype(np.int64)


def check_behavior(beh: object, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """Decode targets: trials x time x variables (trials x time for one), the same trials as the
    data and at most as many bins as it observes, shape[1] (fewer: they are the last observed
    bins)."""
    if beh is None:
        return None
    b = as_numeric(beh, what)
    if b.ndim == 2:
        b = b[:, :, None]
    if b.ndim != 3 or b.shape[0] != shape[0]:
        found = f"{b.shape[0]} trials" if b.ndim == 3 else f"shape {b.shape}"
        hint = ("; its last axis has the data's trials: if it is variables x time x trials "
                "(MATLAB's order), save permute(behavior, [3 2 1])"
                if b.ndim == 3 and b.shape[2] == shape[0] else "")
        raise UserInputError(f"{what}: expected trials x time x variables with the data's "
                             f"{shape[0]} trials, found {found}{hint}")
    if b.shape[1] > shape[1] or b.shape[1] < 1 or b.shape[2] < 1:
        raise UserInputError(f"{what}: {b.shape[1]} bins x {b.shape[2]} variables; expected 1 to "
                             f"{shape[1]} bins (the data's observed bins, forward bins excluded) "
                             "and at least one variable")
    _check_finite(b.astype(np.float64, copy=False), f"{what} (decode targets)")
    return np.ascontiguousarray(b, dtype=np.float32)


def check_heldout(cfg, n_neurons: int, n_time: int, what: str) -> tuple[np.ndarray, int]:
    """(held-out neurons, forward bins) from data.heldout_neurons / heldout_fraction /
    forward_bins, checked against the data's size."""
    if cfg.heldout_neurons is not None and cfg.heldout_fraction > 0:
        raise UserInputError("data.heldout_neurons and data.heldout_fraction: give one of them")
    if cfg.heldout_neurons is not None:
        held = np.unique(np.asarray(cfg.heldout_neurons, dtype=np.int64))
        if held.size and (held.min() < 0 or held.max() >= n_neurons):
            raise UserInputError(f"data.heldout_neurons: indices must lie in 0..{n_neurons - 1} "
                                 f"(0-based) for {what}'s {n_neurons} neurons")
    else:
        k = int(round(cfg.heldout_fraction * n_neurons))
        k = max(k, 1) if cfg.heldout_fraction > 0 else 0
        rng = np.random.default_rng(cfg.split_seed + 1)
        held = np.sort(rng.choice(n_neurons, size=k, replace=False)).astype(np.int64)
    if held.size >= n_neurons:
        key = "heldout_neurons" if cfg.heldout_neurons is not None else \
            f"heldout_fraction={cfg.heldout_fraction}"
        raise UserInputError(f"data.{key}: {held.size} of {n_neurons} neurons held out "
                             "leaves none for the encoders")
    if cfg.forward_bins > n_time - MIN_BINS:
        raise UserInputError(f"data.forward_bins={cfg.forward_bins}: leaves fewer than "
                             f"{MIN_BINS} observed bins of {n_time}")
    return held, int(cfg.forward_bins)


def content_warnings(x: np.ndarray, truth: np.ndarray | None, behavior: np.ndarray | None,
                     splits: dict[str, np.ndarray], label: str, unit: str = "trial"
                     ) -> list[str]:
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
    if truth is not None and np.ptp(truth) == 0:
        out.append(f"{label}: truth has the same value everywhere; R^2 against it is undefined "
                   "and left out")
    elif truth is not None and within_share(truth) < FLAT_TRUTH:
        out.append(f"{label}: the true rates hardly vary within each channel (over time and "
                   f"trials: {100 * within_share(truth):.2g}% of their variance), so R^2 against "
                   "them would score only each channel's mean: left out")
    if behavior is not None:
        flat = behavior.reshape(-1, behavior.shape[-1])
        const = np.flatnonzero(np.ptp(flat, axis=0) == 0)
        if const.size:
            out.append(f"{label}: decode target(s) {listed(const)} (0-based) are constant; "
                       "there is nothing to decode in them, so they are left out of decoding")
    return out


MIN_CHANNELS = 3  # fewer: a population too small to share dynamics, said
FLAT_TRUTH = 0.01  # within-channel share of the truth's variance below which R^2 is not scored


def within_share(truth: np.ndarray) -> float:
    """The share of the truth's variance that lies within channels (over time and trials), not
    between their means: a pooled R^2 of rates that differ only in their means is high on
    pure noise (0.995 in an audit). NaN for a constant truth."""
    flat = truth.reshape(-1, truth.shape[-1]).astype(np.float64)
    total = float(((flat - flat.mean()) ** 2).mean())
    return float(flat.var(axis=0).mean()) / total if total > 0 else float("nan")


def truth_units(x: np.ndarray, truth: np.ndarray) -> str | None:
    """Why the true rates (means) are not in the data's units, or None. R^2 as 1 - SSE/SST then
    says nothing (audits: -39 for dF/F against spike rates); only correlations compare. For
    non-negative data the means compare (a Poisson rate's mean is the counts' mean; spikes/s
    against counts per bin are a bin width apart); for signed data the offset and spread."""
    xm, tm = float(x.mean(dtype=np.float64)), float(truth.mean(dtype=np.float64))
    if x.min() >= 0 and truth.min() >= 0:
        if xm > 0 and tm > 0 and not 1 / 3 <= tm / xm <= 3:
            return f"its mean is {tm / xm:.2g} times the data's"
        return None
    xs, ts = float(x.std(dtype=np.float64)), float(truth.std(dtype=np.float64))
    if ts > 0 and xs > 0 and (not 0.1 <= ts / xs <= 10 or abs(xm - tm) > 2 * ts):
        return f"mean {tm:.2g} and spread {ts:.2g} against the data's {xm:.2g} and {xs:.2g}"
    return None


def _trial_warnings(x: np.ndarray, label: str) -> list[str]:
    """Trials that carry nothing to model: all identical, or some without any activity."""
    flat = x.reshape(x.shape[0], -1)
    if x.shape[0] > 1 and np.array_equal(flat, np.broadcast_to(flat[:1], flat.shape)):
        return [f"{label}: every trial is the same: there is no trial-to-trial variability for "
                "LFADS to model"]
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
    - Trials of different lengths padded to one: a trial's run is flagged when the chance of it
      is tiny, each bin's chance of silence taken from all trials at that bin (so activity that
      fades at the ends of every trial is not padding), p = prod_b p_b, n_trials * p < 1e-3.
    - The same bins empty in every trial (a recording cut short): flagged when silence inside the
      trials is rare enough that even two such bins would not happen by chance."""
    silent = ~x.any(axis=2)  # trials x time
    n, t = silent.shape
    tail = np.cumprod(silent[:, ::-1], axis=1).sum(axis=1)
    head = np.cumprod(silent, axis=1).sum(axis=1)
    # each bin's chance of silence (at least 1/n in any run, which includes the trial itself)
    log_p = np.log(np.maximum(silent.mean(axis=0), 1.0 / n))
    cum = np.concatenate([[0.0], np.cumsum(log_p)])
    chance = np.minimum(cum[t] - cum[t - tail], cum[head])  # log p of each trial's longer run
    run = np.maximum(tail, head)
    flagged = np.flatnonzero((run >= 3) & (run < t) & (chance + math.log(n) < math.log(1e-3)))
    if flagged.size:
        i = int(flagged[np.argmax(run[flagged])])
        span = f"bins {t - tail[i]}-{t - 1}" if tail[i] >= head[i] else f"bins 0-{head[i] - 1}"
        return [f"{label}: {flagged.size} of {n} trials end or begin with a run of bins in which "
                f"every channel is exactly 0 (longest: trial {i}, {span}, 0-based), which the "
                "other trials make unlikely by chance: zero-padding of trials of different "
                "lengths? LFADS would model it as real silence; cut the trials to a common "
                "length (e.g. the shortest) instead"]
    common = min(int(tail.min()), t - 1), min(int(head.min()), t - 1)
    inner = silent[:, common[1]:t - common[0]]
    if max(common) >= 2 and inner.size and inner.mean() ** (2 * n) < 1e-6:
        span = f"last {common[0]}" if common[0] >= common[1] else f"first {common[1]}"
        return [f"{label}: the {span} bins are exactly 0 in every trial and channel, while the "
                "rest of the trials is rarely silent: padding, or bins outside the recording? "
                "If so, cut them off: LFADS would model them as real silence"]
    return []


SAME_COUNTS, SAME_SIGNAL = 0.9, 0.9999  # correlations above which two channels are copies
MAX_PAIRWISE = 2000  # channels; beyond, the correlation matrix is not worth its time here


def _copies(x: np.ndarray, label: str) -> list[str]:
    """Channels that are (nearly) copies of each other, e.g. one neuron sorted twice: with a copy
    in its input LFADS can pass a neuron's own spikes through (coordinated dropout masks only
    the channel itself), so its rates and bits/spike look better than the dynamics it found.
    Counts: correlation above SAME_COUNTS (real neurons are far below at these bin sizes);
    continuous signals, which can be that correlated by nature: only exact copies."""
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[1] > MAX_PAIRWISE:
        return []
    n = min(len(flat), 20_000, max(2_000, 10_000_000 // flat.shape[1]))  # ~80 MB at most
    rows = flat if len(flat) <= n else flat[np.random.default_rng(0).choice(
        len(flat), n, replace=False)]
    rows = rows.astype(np.float64)  # (float32 squares of huge values overflow)
    sd = rows.std(axis=0)
    live = np.flatnonzero(sd > 0)
    if live.size < 2:
        return []
    z = (rows[:, live] - rows[:, live].mean(axis=0)) / sd[live]
    corr = np.triu(z.T @ z / len(rows), k=1)
    limit = SAME_COUNTS if np.array_equal(rows, np.round(rows)) else SAME_SIGNAL
    a, b = np.nonzero(corr > limit)
    if not a.size:
        return []
    shown = ", ".join(f"{live[i]} and {live[j]} (r = {corr[i, j]:.2f})"
                      for i, j in list(zip(a, b, strict=True))[:4])
    more = f" and {a.size - 4} more" if a.size > 4 else ""
    return [f"{label}: {a.size} pair(s) of channels are (nearly) copies of each other (0-based: "
            f"{shown}{more}): a neuron sorted twice, or a channel saved twice? LFADS can pass "
            "one copy's values to the other, so rates and bits/spike would look better than the "
            "dynamics it found; keep one channel of each pair"]


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
