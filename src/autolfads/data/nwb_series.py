"""NWB time series (behaviour, calcium dF/F, EMG, LFP): found by name or path anywhere in the
file, and read at the times a Dataset needs: resampled at bin centres (decode targets) or
averaged over each bin (data.signal), one trial's samples at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from autolfads.data.validate import listed
from autolfads.errors import UserInputError

READ_VALUES = 20_000_000  # samples x channels read at once (160 MB as float64)


def series_paths(nwb) -> dict[str, object]:
    """Every time series in the file but images, by path: MODULE/NAME or MODULE/CONTAINER/NAME
    (inside Position, BehavioralTimeSeries, DfOverF, LFP, ...) first, then acquisition/NAME and
    stimulus/NAME (raw recordings)."""
    from pynwb import TimeSeries
    from pynwb.image import ImageSeries

    found: dict[str, object] = {}
    for obj in nwb.objects.values():
        if not isinstance(obj, TimeSeries) or isinstance(obj, ImageSeries):
            continue
        names, node = [], obj
        while node is not None and node is not nwb:
            names.append(node.name)
            node = node.parent
        if len(names) == 1:  # directly in the file
            names.append("stimulus" if obj.name in nwb.stimulus else "acquisition")
        found["/".join(reversed(names))] = obj
    raw = ("acquisition/", "stimulus/")
    return dict(sorted(found.items(), key=lambda kv: (kv[0].startswith(raw), kv[0])))


def find_series(nwb, name: str, p: Path, key: str = "data.behavior"):
    """data.behavior (or data.signal) as one time series: a name or the end of a path
    (behavior/hand_vel); a container holding one series stands for it."""
    paths = series_paths(nwb)
    want = name.strip("/")
    hits = [k for k in paths if k == want or k.endswith("/" + want)]
    if not hits:  # a container's name: the series inside it, where it holds one
        hits = [k for k in paths if k.rsplit("/", 1)[0] == want
                or k.rsplit("/", 1)[0].endswith("/" + want)]
    if len(hits) == 1:
        return paths[hits[0]]
    if hits:
        raise UserInputError(f"{p}: {key}={name} matches {len(hits)} time series: "
                             f"{', '.join(hits)}; give one of these paths")
    have = ", ".join(list(paths)[:8]) or "none"
    raise UserInputError(f"{p}: no time series '{name}' ({key}); the file has: {have}")


class Clock(NamedTuple):
    """When a series' samples were taken, without reading its data."""

    n: int
    first: float
    last: float
    step: float  # typical time between samples
    index: Callable[[np.ndarray], np.ndarray]  # times -> the first sample at or after each
    time: Callable[[np.ndarray], np.ndarray]  # sample indices -> times
    flipped: bool = False  # stored channels x time (transposed)


def transposed(series) -> bool:
    """Stored channels x time, against NWB's time x channels (pynwb warns of it, and reads it
    as written): the rows match the series' ROIs or electrodes, or the columns its timestamps."""
    shape = getattr(series.data, "shape", ())
    if len(shape) != 2 or shape[0] >= shape[1]:
        return False
    region = getattr(series, "rois", None) or getattr(series, "electrodes", None)
    if region is not None and len(region.data) == shape[0]:
        return True
    ts = series.timestamps
    return ts is not None and len(ts) == shape[1]


def clock_of(series, name: str, key: str, p: Path) -> Clock:
    flipped = transposed(series)
    n = int(series.data.shape[int(flipped)]) if hasattr(series.data, "shape") \
        else len(series.data)
    if n == 0 or not np.issubdtype(np.asarray(series.data[:1]).dtype, np.number):
        raise UserInputError(f"{p}: {key}={name} holds no numeric samples")
    if series.timestamps is not None:
        ts = np.asarray(series.timestamps[:], dtype=np.float64)
        if not np.isfinite(ts).all():
            raise UserInputError(f"{p}: {key}={name}: {int((~np.isfinite(ts)).sum())} of its "
                                 f"{ts.size} timestamps are NaN or infinite, so its samples "
                                 "cannot be placed in time")
        if (np.diff(ts) < 0).any():
            raise UserInputError(f"{p}: {key}={name}: its timestamps are not in increasing order")
        step = float(np.median(np.diff(ts[:10_001]))) if n > 1 else 0.0
        return Clock(n, ts[0], ts[-1], step,
                      lambda x: np.searchsorted(ts, x - 1e-6 * step), lambda i: ts[i], flipped)
    t0, step = float(series.starting_time or 0.0), 1.0 / float(series.rate)
    return Clock(n, t0, t0 + (n - 1) * step, step,
                  lambda x: np.clip(np.ceil((x - t0) / step - 1e-6), 0, n).astype(np.int64),
                  lambda i: t0 + np.asarray(i) * step, flipped)


def _values(series, clock: Clock, a: int, b: int) -> np.ndarray:
    """Samples a..b-1 as samples x channels, in the series' units (conversion, offset)."""
    if clock.flipped:
        chunk = np.asarray(series.data[:, a:b], dtype=np.float64).T
    else:
        chunk = np.asarray(series.data[a:b], dtype=np.float64).reshape(b - a, -1)
    return chunk * float(getattr(series, "conversion", 1.0) or 1.0) + float(
        getattr(series, "offset", 0.0) or 0.0)


def _check_covers(clock: Clock, edges: np.ndarray, keep: np.ndarray, name: str, p: Path,
                  key: str) -> None:
    outside = np.flatnonzero((edges[:, 0] < clock.first) | (edges[:, -1] > clock.last))
    if outside.size:
        raise UserInputError(f"{p}: {key}={name} covers {clock.first:.3f} to {clock.last:.3f} s;"
                             f" {outside.size} trial window(s) reach outside it (trials "
                             f"{listed(np.flatnonzero(keep)[outside])}, 0-based)")


def series_at(series, edges: np.ndarray, keep: np.ndarray, name: str, p: Path
              ) -> tuple[np.ndarray, str | None]:
    """The series over each bin of `edges` (trials x bins + 1): the mean of its samples in the
    bin when it samples faster than the bins (a 1 kHz lick sensor in 20 ms bins), else its value
    at the bin's centre, interpolated; trials x bins x dims, and a note. A trial outside the
    series' time range is an error (its values would be invented); NaN samples (tracking
    dropouts) are bridged from the samples beside them."""
    clock = clock_of(series, name, "data.behavior", p)
    _check_covers(clock, edges, keep, name, p, "data.behavior")
    data, t = _values(series, clock, 0, clock.n), clock.time(np.arange(clock.n))
    ok = np.isfinite(data)
    times = 0.5 * (edges[:, :-1] + edges[:, 1:])
    flat = times.ravel()
    out = np.stack([np.interp(flat, t[ok[:, d]], data[ok[:, d], d]) if ok[:, d].any()
                    else np.full(flat.shape, np.nan) for d in range(data.shape[1])], axis=-1)
    if clock.step < 0.4 * float(np.median(np.diff(edges[0]))):  # bins of several samples
        means = np.stack([_means(clock, e, lambda a, b: data[a:b]) for e in edges])
        means = means.reshape(out.shape)  # (from the samples read above: no second read)
        out = np.where(np.isfinite(means), means, out)
    note = None
    if not ok.all():
        missing = ~ok.all(axis=1)
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, missing.astype(np.int8), 0])))[::2]
        note = (f"{p}: data.behavior={name} has {int(missing.sum())} sample(s) that are NaN "
                f"(dropouts), the longest run {runs.max() * clock.step:.3g} s: bridged by "
                "interpolating from the samples beside them")
    return out.reshape(*times.shape, data.shape[1]), note


def series_binned(series, edges: np.ndarray, keep: np.ndarray, name: str, p: Path
                  ) -> tuple[np.ndarray, float]:
    """A time series as data: the mean of its finite samples in each bin [edge, next edge)
    (trials x bins x channels), read a stretch of bins at a time (a raw recording, or a whole
    session read as one recording, need not fit in memory); a bin without one (a series slower
    than the bins) takes the value interpolated at its centre. Also the time between samples."""
    clock = clock_of(series, name, "data.signal", p)
    _check_covers(clock, edges, keep, name, p, "data.signal")
    shape = getattr(series.data, "shape", (clock.n,))
    channels = int(shape[0]) if clock.flipped else int(np.prod(shape[1:]))
    per_bin = float(np.median(np.diff(edges[0]))) / max(clock.step, 1e-12)  # samples per bin
    stretch = max(1, int(READ_VALUES / max(per_bin * channels, 1.0)))  # bins per read
    out = [np.concatenate([_means(clock, edges[k, i : i + stretch + 1],
                                  lambda a, b: _values(series, clock, a, b))
                           for i in range(0, edges.shape[1] - 1, stretch)])
           for k in range(edges.shape[0])]
    return np.stack(out).astype(np.float32), clock.step


def _means(clock: Clock, e: np.ndarray, samples: Callable[[int, int], np.ndarray]
           ) -> np.ndarray:
    """Bins [e[i], e[i + 1]) of a series: the mean of their finite samples (bins x channels),
    interpolated at a bin's centre where it has none. `samples(a, b)`: samples a..b-1 (read
    from the file, or sliced from those already read)."""
    at = clock.index(e)
    a, b = max(int(at[0]) - 1, 0), min(int(at[-1]) + 1, clock.n)  # and a neighbour each side
    chunk = samples(a, b)
    ok = np.isfinite(chunk)
    zero = np.zeros((1, chunk.shape[1]))
    sums = np.concatenate([zero, np.cumsum(np.where(ok, chunk, 0.0), axis=0)])
    counts = np.concatenate([zero, np.cumsum(ok, axis=0)])
    loc = at - a
    n = counts[loc[1:]] - counts[loc[:-1]]
    mean = (sums[loc[1:]] - sums[loc[:-1]]) / np.maximum(n, 1)
    centres = 0.5 * (e[:-1] + e[1:])
    t = clock.time(np.arange(a, b))
    for d in np.flatnonzero((n == 0).any(axis=0)):
        good, empty = ok[:, d], n[:, d] == 0
        mean[empty, d] = np.interp(centres[empty], t[good], chunk[good, d]) if good.any() \
            else np.nan  # no sample at all: the data check names it
    return mean
