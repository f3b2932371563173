"""Trials kept one array each (a MATLAB cell array, a Python list), as labs keep trials of
different lengths: stacked into one array in the data's layout, every trial cut to the shortest
(its first bins, as an NWB file's default window is cut), which LFADS's fixed length needs."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from autolfads.errors import UserInputError

MIN_SHARE = 0.5  # the shortest trial under this share of the median length: said


class Stacked(NamedTuple):
    array: np.ndarray  # the trials as one array, in the data's layout
    lengths: np.ndarray  # each trial's bins before the cut
    cut_to: int  # the shortest trial's bins: every trial's first bins kept
    notes: list[str]
    start: int = 0  # the first bin kept (trials padded before their starts keep their last)


def trial_list(data: object) -> list[np.ndarray] | None:
    """The trials of a vector of 2-D numeric arrays (a MATLAB cell array, a Python list), or
    None for anything else (a nested list of numbers is an array, not trials)."""
    def dense(c: object) -> np.ndarray:  # a MATLAB sparse raster comes as a scipy matrix
        return np.asarray(c.toarray() if hasattr(c, "toarray") else c)

    if isinstance(data, (list, tuple)):
        if not data or not all(np.ndim(c) == 2 for c in data):
            return None
        items = [dense(c) for c in data]
    elif isinstance(data, np.ndarray) and data.dtype.kind == "O" and data.size \
            and data.squeeze().ndim <= 1:
        items = [dense(c) for c in data.ravel()]
    else:
        return None
    ok = all(t.ndim == 2 and t.dtype.kind in "iufb" for t in items)
    return items if ok else None


def stack_trials(data: object, layout: str, what: str, min_bins: int) -> Stacked | None:
    """Trials kept one array each, stacked in `layout` and cut to the shortest; None when
    `data` is not such a set (as_numeric names what it cannot read). Within a trial the axes
    are the layout's without `trials` (a MATLAB cell: channels x time)."""
    trials, axes = trial_list(data), layout.split("_")
    if trials is None or len(axes) != 3 or "trials" not in axes:
        return None
    within = [a for a in axes if a != "trials"]
    t_ax = within.index("time")
    empty = [k for k, t in enumerate(trials) if t.size == 0]
    if empty:
        raise UserInputError(f"{what}: trial {empty[0]} (0-based) is empty ({len(empty)} of "
                             f"{len(trials)} trials are); remove the empty trials")
    lengths = np.array([t.shape[t_ax] for t in trials])
    widths = sorted({t.shape[1 - t_ax] for t in trials})
    other = "_".join([*reversed(within), "trials"] if axes[-1] == "trials"
                     else ["trials", *reversed(within)])
    if len(widths) > 1:
        shape = " x ".join(within)
        raise UserInputError(
            f"{what}: {len(trials)} trials read as {shape} have {widths[0]} to {widths[-1]} "
            f"{within[1 - t_ax]}: every trial needs the same channels (units lost during the "
            f"session?); if each trial is {' x '.join(reversed(within))}, pass --layout {other} "
            "(data.layout)")
    k, shortest = _shortest(lengths, what, min_bins, "")
    notes = []
    if lengths.max() == shortest and widths[0] > shortest:  # equal lengths: which axis is time?
        notes.append(f"{what}: each trial read as {' x '.join(within)} has {widths[0]} "
                     f"{within[1 - t_ax]} of {shortest} bins; if each trial is "
                     f"{' x '.join(reversed(within))}, pass --layout {other} (data.layout)")
    if lengths.max() > shortest:
        notes.append(_cut_note(what, f"{len(trials)} trials of {shortest} to "
                               f"{int(lengths.max())} bins", "first", k, lengths))
    cut = [np.take(t, np.arange(shortest), axis=t_ax) for t in trials]
    return Stacked(np.stack(cut, axis=axes.index("trials")), lengths, shortest, notes)


def cut_companion(values: object, stacked: Stacked, layout: str, what: str) -> object:
    """Another per-trial variable beside stacked data (truth in the data's layout; decode
    targets, external inputs as trials x time x variables), cut to the same bins: a set of
    trials (time is the axis as long as its trial's data), or one array with the data's
    original length. Anything else comes back as it is, for its own checks to name."""
    if isinstance(values, (list, tuple)) and values and all(np.ndim(v) == 1 for v in values):
        values = [np.asarray(v)[:, None] for v in values]  # one variable per trial
    trials = trial_list(values)
    if trials is None:
        if isinstance(values, np.ndarray) and values.ndim == 3:
            t_ax = layout.split("_").index("time") if layout else 1
            if values.shape[t_ax] == stacked.lengths.max():
                return np.take(values, stacked.start + np.arange(stacked.cut_to), axis=t_ax)
        return values
    if len(trials) != len(stacked.lengths):
        raise UserInputError(f"{what}: {len(trials)} trials, the data's {len(stacked.lengths)}")
    axes = layout.split("_") if layout else ["trials", "time", "variables"]
    within = [a for a in axes if a != "trials"]
    out = []
    for k, (t, n) in enumerate(zip(trials, stacked.lengths, strict=True)):
        fits = [a for a in (0, 1) if t.shape[a] == n]
        if not fits:
            raise UserInputError(f"{what}: trial {k} (0-based) has shape {t.shape}, but its data "
                                 f"has {n} bins")
        t_ax = within.index("time") if len(fits) == 2 else fits[0]
        piece = np.take(t, stacked.start + np.arange(stacked.cut_to), axis=t_ax)
        out.append(piece if t_ax == within.index("time") else piece.T)
    return np.stack(out, axis=axes.index("trials"))


def cut_nan_padding(a: np.ndarray, layout: str, what: str, min_bins: int
                    ) -> tuple[np.ndarray, Stacked | None]:
    """Trials of different lengths in one array, padded with NaN after their ends (every channel
    NaN from some bin on, nowhere else), or before their starts (trials aligned to their ends):
    (the array cut to the shortest trial, keeping its first or last bins, how it was cut, or
    None when nothing was). NaN inside a padded trial is an error; other NaN come back as they
    are (check_values names them)."""
    axes = layout.split("_")
    if a.ndim != 3 or a.dtype.kind != "f" or "trials" not in axes or not np.isnan(a).any():
        return a, None
    t_ax = axes.index("time")
    x = np.moveaxis(a, (axes.index("trials"), t_ax), (0, 1))
    padded = np.isnan(x).all(axis=2)  # trials x bins
    after = padded[:, ::-1].cumprod(axis=1).sum(axis=1)  # each trial's final NaN run
    before = padded.cumprod(axis=1).sum(axis=1)  # and its first
    if after.any():
        return _cut(x, a, after, "after their ends", "first", 0, axes, what, min_bins)
    if before.any():
        return _cut(x[:, ::-1], a, before, "before their starts", "last", 1, axes, what, min_bins)
    return a, None


def _cut(x: np.ndarray, a: np.ndarray, run: np.ndarray, where: str, keep: str, from_end: int,
         axes: list[str], what: str, min_bins: int) -> tuple[np.ndarray, Stacked]:
    """cut_nan_padding's cut: x trials x bins x channels with the padding at the end of each
    trial (reversed in time for padding before the starts), `run` each trial's padding."""
    n_bins = x.shape[1]
    lengths = n_bins - run
    inside = np.isnan(x) & (np.arange(n_bins)[None, :, None] < lengths[:, None, None])
    if inside.any():
        trial, t, ch = (int(v[0]) for v in np.nonzero(inside))
        t = n_bins - 1 - t if from_end else t
        raise UserInputError(f"{what}: trials padded with NaN {where}, but {int(inside.sum())} "
                             f"NaN lie inside trials (first: trial {trial}, bin {t}, channel "
                             f"{ch}, 0-based); replace those (values must be finite)")
    k, shortest = _shortest(lengths, what, min_bins, " besides its NaN padding")
    span = (f"trials of {shortest} to {int(lengths.max())} bins, padded with NaN {where}"
            if lengths.max() > shortest else f"every trial has {n_bins - shortest} NaN bins "
            f"{where}")
    notes = [_cut_note(what, span, keep, k, lengths)]
    start = n_bins - shortest if from_end else 0
    cut = np.take(a, start + np.arange(shortest), axis=axes.index("time"))
    # (companions are as long as the padded array: cut_companion cuts them by that length)
    return cut, Stacked(cut, np.full(len(lengths), n_bins), shortest, notes, start)


def _shortest(lengths: np.ndarray, what: str, min_bins: int, beside: str) -> tuple[int, int]:
    """(the shortest trial, its bins), which every trial is cut to: an error when too few."""
    k, shortest = int(np.argmin(lengths)), int(lengths.min())
    if shortest < min_bins:
        raise UserInputError(f"{what}: trial {k} (0-based) has {shortest} bins{beside}, and every "
                             f"trial is cut to the shortest (LFADS needs at least {min_bins}); "
                             "remove it or cut the trials yourself")
    return k, shortest


def _cut_note(what: str, span: str, keep: str, k: int, lengths: np.ndarray) -> str:
    shortest, typical = int(lengths[k]), float(np.median(lengths))
    return (f"{what}: {span}: each is cut to its {keep} {shortest} (trial {k}, 0-based, is the "
            "shortest)" + (f"; the median trial has {typical:.0f}, so most lose much: remove the "
                           "short ones, or cut the trials around an event yourself"
                           if shortest < MIN_SHARE * typical else ""))
