"""Trials kept one array each (a MATLAB cell array, a Python list), as labs keep trials of
different lengths: stacked into one array in the data's layout, every trial cut to the shortest
(its first bins, as an NWB file's default window is cut), which LFADS's fixed length needs."""

from __future__ import annotations

import numpy as np

from autolfads.errors import UserInputError

MIN_SHARE = 0.5  # the shortest trial under this share of the median length: said


def stack_trials(data: object, layout: str, what: str, min_bins: int
                 ) -> tuple[object, list[str]]:
    """(data as one array in `layout`, notes) when `data` is a vector of 2-D trials; anything
    else comes back as it is (as_numeric names what it cannot read). Within a trial the axes are
    the layout's without `trials` (a MATLAB cell: channels x time); a trial set the other way
    round is read so when its channel count is the one that is the same in every trial."""
    if isinstance(data, (list, tuple)):
        cells = np.empty(len(data), dtype=object)
        cells[:] = [np.asarray(c) for c in data]
        data = cells
    if not isinstance(data, np.ndarray) or data.dtype.kind != "O" or data.size == 0:
        return data, []
    axes = layout.split("_")
    if data.squeeze().ndim > 1 or len(axes) != 3 or "trials" not in axes:
        return data, []
    trials = [np.asarray(c) for c in data.ravel()]
    if any(t.ndim != 2 or t.dtype.kind not in "iufb" for t in trials):
        return data, []
    within = [a for a in axes if a != "trials"]
    t_ax = within.index("time")
    lengths = np.array([t.shape[t_ax] for t in trials])
    widths = {t.shape[1 - t_ax] for t in trials}
    notes = []
    if len(widths) > 1:
        if len({t.shape[t_ax] for t in trials}) > 1:
            raise UserInputError(f"{what}: {len(trials)} trials (a cell array or list) whose "
                                 "numbers of channels and of bins both differ; every trial needs "
                                 "the same channels")
        t_ax = 1 - t_ax  # the axis the layout gives to channels is the one that varies: time
        lengths = np.array([t.shape[t_ax] for t in trials])
        notes.append(f"{what}: each trial is read as {' x '.join(reversed(within))}, the "
                     "other way round from the layout: its channel count is the one that is "
                     "the same in every trial")
    k, shortest, typical = int(np.argmin(lengths)), int(lengths.min()), float(np.median(lengths))
    if shortest < min_bins:
        raise UserInputError(f"{what}: trial {k} (0-based) has {shortest} bins, and every trial "
                             f"is cut to the shortest (LFADS needs at least {min_bins}); remove "
                             "it or cut the trials yourself")
    if lengths.max() > shortest:
        notes.append(f"{what}: {len(trials)} trials of {shortest} to {int(lengths.max())} bins: "
                     f"each is cut to its first {shortest} (trial {k}, 0-based, is the shortest)"
                     + (f"; the median trial has {typical:.0f}, so most lose much: remove the "
                        "short ones, or cut the trials around an event yourself"
                        if shortest < MIN_SHARE * typical else ""))
    cut = [np.take(t, np.arange(shortest), axis=t_ax) for t in trials]
    if t_ax != within.index("time"):
        cut = [t.T for t in cut]
    return np.stack(cut, axis=axes.index("trials")), notes


def cut_nan_padding(a: np.ndarray, layout: str, what: str, min_bins: int
                    ) -> tuple[np.ndarray, int | None, list[str]]:
    """Trials of different lengths in one array, padded with NaN after their ends (every channel
    NaN from some bin on, nowhere else): (the array cut to the shortest trial, its length or
    None when nothing was cut, notes). Other NaN come back as they are (check_values names them)."""
    axes = layout.split("_")
    if a.ndim != 3 or a.dtype.kind != "f" or "trials" not in axes or not np.isnan(a).any():
        return a, None, []
    x = np.moveaxis(a, (axes.index("trials"), axes.index("time")), (0, 1))
    nan = np.isnan(x)
    padded = nan.all(axis=2)  # trials x bins
    n_bins = x.shape[1]
    lengths = n_bins - padded[:, ::-1].cumprod(axis=1).sum(axis=1)  # before the final NaN run
    if (lengths == n_bins).all():
        return a, None, []  # no trial ends in NaN: not padding
    inside = nan & (np.arange(n_bins)[None, :, None] < lengths[:, None, None])
    if inside.any():
        trial, t, ch = (int(v[0]) for v in np.nonzero(inside))
        raise UserInputError(f"{what}: trials padded with NaN after their ends, but "
                             f"{int(inside.sum())} NaN lie inside trials (first: trial {trial}, "
                             f"bin {t}, channel {ch}, 0-based); replace those (values must be "
                             "finite)")
    k, shortest = int(np.argmin(lengths)), int(lengths.min())
    if shortest < min_bins:
        raise UserInputError(f"{what}: trial {k} (0-based) has {shortest} bins before its NaN "
                             f"padding, and every trial is cut to the shortest (LFADS needs at "
                             f"least {min_bins}); remove it or cut the trials yourself")
    typical = float(np.median(lengths))
    span = (f"trials of {shortest} to {int(lengths.max())} bins, padded with NaN"
            if lengths.max() > shortest else f"every trial ends in {n_bins - shortest} NaN bins")
    notes = [f"{what}: {span}: each is cut to its first {shortest} (trial {k}, 0-based, is "
             "the shortest)"
             + (f"; the median trial has {typical:.0f}, so most lose much: remove the short "
                "ones, or cut the trials around an event yourself"
                if shortest < MIN_SHARE * typical else "")]
    return np.take(a, np.arange(shortest), axis=axes.index("time")), shortest, notes
