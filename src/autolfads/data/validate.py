"""Checks shared by every reader (and `from_array`): each failure is one `UserInputError` line.

`what` is always a prefix like "data.mat: variable 'data'" so the message names the file and the
variable; the rest of the message says what is wrong and how to fix it.
"""

from __future__ import annotations

import numpy as np

from autolfads.data.dataset import AXES
from autolfads.errors import UserInputError

MIN_TRIALS = 10
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
    try:
        a = np.asarray(arr)
    except ValueError:  # a list of arrays of different shapes, not one trial each (ragged.py)
        raise UserInputError(f"{what}: arrays of different shapes that are not trials of 2-D "
                             "arrays; give each trial as a 2-D array (time x channels from "
                             "Python), or one numeric array") from None
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
        fix = {"O": "; give trials as a cell vector (1 x K) of channels x time arrays, or as one "
                    "numeric array",
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
            "trials: give it as a 2-D array (channels x time in a file, time x channels "
            "from Python)"
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
