"""Neurodata Without Borders (NWB, what DANDI serves) -> a Dataset, with pynwb.

Spike times from the units table are counted in bins of data.bin_size_ms (default 10 ms) over a
window around each trial's alignment time: the trials table's column data.align (default
start_time) plus data.window_ms = [start, stop] (default: from the alignment to the end of the
shortest trial). Optional: a trials column as the condition of each trial (data.condition), and a
time series (data.behavior: a name such as hand_vel, or a path such as behavior/Position/hand_pos,
looked up in acquisition, in every processing module and inside their containers) resampled at
the bin centres as decode targets. The Neural Latents Benchmark's files work as they are: their
units' `heldout` column gives the held-out neurons and their trials' `split` column the
train / val / test split (trials marked 'none' are left out). data.units keeps curated units
(quality=good); data.signal bins a recorded signal (calcium dF/F, EMG) instead of spikes, and
data.intervals names another table of trials (e.g. epochs). Each problem is one
UserInputError line; what is valid but worth knowing (units not recorded during some trials,
overlapping windows) is a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import Dataset
from autolfads.data.validate import MIN_BINS, listed
from autolfads.errors import UserInputError

DEFAULT_BIN_MS = 10.0


def _open(p: Path):
    try:
        from pynwb import NWBHDF5IO
    except ImportError:
        raise UserInputError(f"{p}: reading NWB needs pynwb: pip install 'autolfads[nwb]'"
                             ) from None
    try:
        return NWBHDF5IO(str(p), "r", load_namespaces=True)
    except Exception as e:  # h5py / hdmf raise many kinds for a file that is not NWB
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"{p}: could not be read as NWB ({first})") from None


def _window(trials, keep: np.ndarray, cfg: DataConfig, p: Path
            ) -> tuple[np.ndarray, float, float]:
    """(alignment time per kept trial, window start, window stop) in seconds."""
    columns = list(trials.colnames)
    if cfg.align not in (*columns, "start_time", "stop_time"):
        raise UserInputError(f"{p}: the trials table has no column '{cfg.align}' (data.align); "
                             f"columns: {', '.join(columns)}")
    try:
        align = np.asarray(trials[cfg.align][:], dtype=np.float64)[keep]
    except (TypeError, ValueError):
        raise UserInputError(f"{p}: the trials column '{cfg.align}' (data.align) holds no times"
                             ) from None
    missing = np.flatnonzero(~np.isfinite(align))
    if missing.size:
        raise UserInputError(f"{p}: {missing.size} trial(s) have no {cfg.align} (NaN): trials "
                             f"{listed(np.flatnonzero(keep)[missing])} (0-based); choose a "
                             "data.align column that every trial has")
    if cfg.window_ms is not None:
        if len(cfg.window_ms) != 2 or cfg.window_ms[1] <= cfg.window_ms[0]:
            raise UserInputError(f"data.window_ms={cfg.window_ms}: expected [start, stop] in ms "
                                 "with start < stop, e.g. [-250, 450]")
        return align, cfg.window_ms[0] / 1000.0, cfg.window_ms[1] / 1000.0
    # From the alignment to the end of the shortest trial (counted from its alignment).
    ends = np.asarray(trials["stop_time"][:], dtype=np.float64)[keep] - align
    missing = np.flatnonzero(~np.isfinite(ends))
    if missing.size:
        raise UserInputError(f"{p}: {missing.size} trial(s) have no stop_time (NaN): trials "
                             f"{listed(np.flatnonzero(keep)[missing])} (0-based); set "
                             "data.window_ms")
    k = int(np.argmin(ends))
    bin_s = (cfg.bin_size_ms or DEFAULT_BIN_MS) / 1000.0
    if ends[k] < MIN_BINS * bin_s:
        raise UserInputError(
            f"{p}: trial {int(np.flatnonzero(keep)[k])} (0-based) ends {ends[k] * 1000:.0f} ms "
            f"after its {cfg.align}, and the shortest trial sets the default window: fewer than "
            f"{MIN_BINS} bins of {bin_s * 1000:g} ms; set data.window_ms (e.g. [0, 700])")
    return align, 0.0, float(ends[k])


def _series_paths(nwb) -> dict[str, object]:
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


def _find_series(nwb, name: str, p: Path, key: str = "data.behavior"):
    """data.behavior (or data.signal) as one time series: a name or the end of a path
    (behavior/hand_vel); a container holding one series stands for it."""
    paths = _series_paths(nwb)
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


class _Clock(NamedTuple):
    """When a series' samples were taken, without reading its data."""

    n: int
    first: float
    last: float
    step: float  # typical time between samples
    index: Callable[[np.ndarray], np.ndarray]  # times -> the first sample at or after each
    time: Callable[[np.ndarray], np.ndarray]  # sample indices -> times


def _clock(series, name: str, key: str, p: Path) -> _Clock:
    n = int(series.data.shape[0]) if hasattr(series.data, "shape") else len(series.data)
    if n == 0 or not np.issubdtype(np.asarray(series.data[:1]).dtype, np.number):
        raise UserInputError(f"{p}: {key}={name} holds no numeric samples")
    if series.timestamps is not None:
        ts = np.asarray(series.timestamps[:], dtype=np.float64)
        if (np.diff(ts) < 0).any():
            raise UserInputError(f"{p}: {key}={name}: its timestamps are not in increasing order")
        step = float(np.median(np.diff(ts[:10_001]))) if n > 1 else 0.0
        return _Clock(n, ts[0], ts[-1], step,
                      lambda x: np.searchsorted(ts, x - 1e-6 * step), lambda i: ts[i])
    t0, step = float(series.starting_time or 0.0), 1.0 / float(series.rate)
    return _Clock(n, t0, t0 + (n - 1) * step, step,
                  lambda x: np.clip(np.ceil((x - t0) / step - 1e-6), 0, n).astype(np.int64),
                  lambda i: t0 + np.asarray(i) * step)


def _values(series, a: int, b: int) -> np.ndarray:
    """Samples a..b-1 as samples x channels, in the series' units (conversion, offset)."""
    chunk = np.asarray(series.data[a:b], dtype=np.float64).reshape(b - a, -1)
    return chunk * float(getattr(series, "conversion", 1.0) or 1.0) + float(
        getattr(series, "offset", 0.0) or 0.0)


def _check_covers(clock: _Clock, edges: np.ndarray, keep: np.ndarray, name: str, p: Path,
                  key: str) -> None:
    outside = np.flatnonzero((edges[:, 0] < clock.first) | (edges[:, -1] > clock.last))
    if outside.size:
        raise UserInputError(f"{p}: {key}={name} covers {clock.first:.3f} to {clock.last:.3f} s;"
                             f" {outside.size} trial window(s) reach outside it (trials "
                             f"{listed(np.flatnonzero(keep)[outside])}, 0-based)")


def _series_at(series, times: np.ndarray, keep: np.ndarray, name: str, p: Path) -> np.ndarray:
    """The series' values at `times` (trials x bins), by linear interpolation: trials x bins x
    dims. A trial outside the series' time range is an error (its values would be invented)."""
    clock = _clock(series, name, "data.behavior", p)
    _check_covers(clock, times, keep, name, p, "data.behavior")
    data, t = _values(series, 0, clock.n), clock.time(np.arange(clock.n))
    flat = times.ravel()
    out = np.stack([np.interp(flat, t, data[:, d]) for d in range(data.shape[1])], axis=-1)
    return out.reshape(*times.shape, data.shape[1])


def _series_binned(series, edges: np.ndarray, keep: np.ndarray, name: str, p: Path
                   ) -> tuple[np.ndarray, float]:
    """A time series as data: the mean of its finite samples in each bin [edge, next edge)
    (trials x bins x channels), read one trial at a time (a raw recording need not fit in
    memory); a bin without one (a series slower than the bins) takes the value interpolated
    at its centre. Also the time between samples."""
    clock = _clock(series, name, "data.signal", p)
    _check_covers(clock, edges, keep, name, p, "data.signal")
    at = clock.index(edges)  # trials x (bins + 1)
    out = []
    for k in range(edges.shape[0]):
        a, b = max(int(at[k, 0]) - 1, 0), min(int(at[k, -1]) + 1, clock.n)  # and a neighbour
        chunk = _values(series, a, b)
        ok = np.isfinite(chunk)
        zero = np.zeros((1, chunk.shape[1]))
        sums = np.concatenate([zero, np.cumsum(np.where(ok, chunk, 0.0), axis=0)])
        counts = np.concatenate([zero, np.cumsum(ok, axis=0)])
        loc = at[k] - a
        n = counts[loc[1:]] - counts[loc[:-1]]
        mean = (sums[loc[1:]] - sums[loc[:-1]]) / np.maximum(n, 1)
        centres = 0.5 * (edges[k, :-1] + edges[k, 1:])
        t = clock.time(np.arange(a, b))
        for d in np.flatnonzero((n == 0).any(axis=0)):
            good, empty = ok[:, d], n[:, d] == 0
            mean[empty, d] = np.interp(centres[empty], t[good], chunk[good, d]) if good.any() \
                else np.nan  # no sample at all: the data check names it
        out.append(mean)
    return np.stack(out).astype(np.float32), clock.step


def _count(spikes: list[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Spikes per bin: trials x bins x units, each bin [edge, next edge)."""
    counts = np.zeros((edges.shape[0], edges.shape[1] - 1, len(spikes)), dtype=np.float32)
    for n, times in enumerate(spikes):
        counts[:, :, n] = np.diff(np.searchsorted(times, edges), axis=1)
    return counts


NOISE_LABELS = ("noise", "bad", "artifact", "artefact")


def _units_kept(units, rule: str | None, p: Path) -> tuple[np.ndarray, list[str]]:
    """Which units to read (data.units = COLUMN=VALUE[,VALUE...]), and what to say: without a
    rule, a curation column that marks units as noise is pointed out."""
    n = len(units)
    if rule is None:
        for col in ("quality", "KSLabel", "label"):
            if col in units.colnames:
                vals = np.array([str(v).lower() for v in units[col][:]])
                noisy = int(np.isin(vals, NOISE_LABELS).sum())
                if noisy:
                    return np.ones(n, dtype=bool), [
                        f"{p}: the units table's {col} column marks {noisy} of {n} unit(s) as "
                        f"noise; all units are read (keep some with --set data.units={col}=good)"]
        return np.ones(n, dtype=bool), []
    col, _, values = rule.partition("=")
    if not col or not values:
        raise UserInputError(f"data.units={rule}: expected COLUMN=VALUE[,VALUE...], e.g. "
                             "quality=good")
    if col not in units.colnames:
        raise UserInputError(f"{p}: the units table has no column '{col}' (data.units); "
                             f"columns: {', '.join(units.colnames)}")
    def same(v: str, want: str) -> bool:  # "Good" is good, and 10 is 10.0
        v, want = str(v).strip().lower(), want.strip().lower()
        try:
            return v == want or float(v) == float(want)
        except ValueError:
            return False

    vals = np.array([str(v) for v in units[col][:]])
    keep = np.array([any(same(v, w) for w in values.split(",")) for v in vals])
    if not keep.any():
        raise UserInputError(f"{p}: no unit has {col} = {values} (data.units); its values: "
                             f"{', '.join(sorted(set(vals))[:8])}")
    return keep, [f"{p}: {int(keep.sum())} of {n} units read ({rule})"]


def _unit_warnings(units, kept: np.ndarray, edges: np.ndarray, p: Path) -> list[str]:
    """Units whose obs_intervals leave out part of some trial window: silence there is not
    recorded silence."""
    if "obs_intervals" not in units.colnames:
        return []
    lo, hi = edges[:, 0], edges[:, -1]
    short = {}
    for n, unit in enumerate(np.flatnonzero(kept)):  # n: the unit's index among those read
        iv = np.asarray(units["obs_intervals"][int(unit)], dtype=np.float64).reshape(-1, 2)
        covered = ((iv[:, None, 0] <= lo) & (iv[:, None, 1] >= hi)).any(axis=0)
        if not covered.all():
            short[n] = int((~covered).sum())
    if not short:
        return []
    n, k = max(short.items(), key=lambda kv: kv[1])
    return [f"{p}: unit(s) {listed(np.array(sorted(short)))} (0-based) were not recorded during "
            f"all of the trial windows (their obs_intervals; unit {n} misses {k} of "
            f"{len(lo)}): their counts there read as silence"]


def _window_warnings(edges: np.ndarray, p: Path) -> list[str]:
    order = np.argsort(edges[:, 0])
    overlap = int((edges[order[1:], 0] < edges[order[:-1], -1]).sum())
    if not overlap:
        return []
    return [f"{p}: {overlap} trial window(s) overlap the next: their shared spikes count in "
            "both trials (also across training and validation trials)"]


def _no_units(nwb, p: Path) -> UserInputError:
    series = ", ".join(list(_series_paths(nwb))[:6])
    first = series.split(", ")[0]
    found = (f" (the file has time series: {series}; to bin one as the data: --set "
             f"data.signal={first})") if series else ""
    return UserInputError(f"{p}: no units table (spike times); autolfads reads spiking data "
                          f"from NWB's units table{found}")


def _trials_table(nwb, name: str, p: Path):
    """The intervals table whose rows are the trials (data.intervals)."""
    tables = dict(nwb.intervals or {})
    table = tables.get(name)
    if table is not None and len(table) > 0:
        return table
    others = [n for n, t in tables.items() if n != name and len(t) > 0]
    found = (f" (the file has other intervals: {', '.join(others)}; choose one with --set "
             f"data.intervals={others[0]})") if others else ""
    raise UserInputError(f"{p}: no {name} table{found}; trials are cut from the session with "
                         "its start_time (or data.align) column")


def _nlb_split(trials, p: Path) -> tuple[np.ndarray, dict, list[str]]:
    """(trials kept, split indices among them, warnings) from an NLB `split` column; all trials
    and no split without one. Trials marked 'none' are left out, as nlb_tools does."""
    n = len(trials)
    if "split" not in trials.colnames:
        return np.ones(n, dtype=bool), {}, []
    split = np.asarray([str(v) for v in trials["split"][:]])
    keep = split != "none"
    notes = [f"{p}: {n - keep.sum()} trial(s) whose split is 'none' are left out (as nlb_tools "
             "does); the outputs hold the other trials, in the file's order"] if (~keep).any() \
        else []
    split = split[keep]
    inds = {f"{ours}_inds": np.flatnonzero(split == theirs)
            for ours, theirs in (("train", "train"), ("valid", "val"), ("test", "test"))}
    if not len(inds["train_inds"]) or not len(inds["valid_inds"]):
        raise UserInputError(f"{p}: the trials table's split column needs 'train' and 'val' "
                             "trials")
    if not len(inds["test_inds"]):
        inds.pop("test_inds")
    other = len(split) - sum(len(v) for v in inds.values())
    if other:
        raise UserInputError(f"{p}: {other} trial(s) whose split is not train, val, test or "
                             "none")
    return keep, inds, notes


def read_nwb(p: Path, cfg: DataConfig) -> Dataset:
    from autolfads.data.io import from_array

    with _open(p) as io:
        try:
            nwb = io.read()
        except Exception as e:  # noqa: BLE001  (hdmf raises many kinds for a file not NWB)
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise UserInputError(f"{p}: could not be read as NWB ({first})") from None
        has_units = nwb.units is not None and len(nwb.units) > 0
        if not has_units and not cfg.signal:
            raise _no_units(nwb, p)
        trials = _trials_table(nwb, cfg.intervals, p)
        units, notes = (_units_kept(nwb.units, cfg.units, p) if has_units and not cfg.signal
                        else (np.zeros(0, dtype=bool), []))
        spikes = [np.sort(np.asarray(nwb.units["spike_times"][int(i)], dtype=np.float64))
                  for i in np.flatnonzero(units)]
        keep, inds, warnings = _nlb_split(trials, p)
        warnings = notes + warnings
        align, start, stop = _window(trials, keep, cfg, p)
        bin_s = (cfg.bin_size_ms or DEFAULT_BIN_MS) / 1000.0
        n_bins = int(round((stop - start) / bin_s))
        if n_bins < 1:
            raise UserInputError(f"{p}: the window ({start * 1000:g} to {stop * 1000:g} ms) is "
                                 f"shorter than one {bin_s * 1000:g} ms bin")
        edges = align[:, None] + start + bin_s * np.arange(n_bins + 1)  # trials x (bins + 1)
        # The session: from its first event (a spike, a trial) to its last, not from clock 0.
        starts, stops = (np.asarray(trials[c][:], dtype=np.float64) for c in
                         ("start_time", "stop_time"))
        first = min([float(s[0]) for s in spikes if s.size] + [float(starts.min())])
        last = max([float(s[-1]) for s in spikes if s.size] + [float(stops.max())])
        if cfg.signal:  # the signal's own span is checked when it is binned
            first, last = -np.inf, np.inf
        outside = np.flatnonzero((edges[:, 0] < first) | (edges[:, -1] > last))
        if outside.size:
            k = int(outside[0])
            raise UserInputError(
                f"{p}: trial {int(np.flatnonzero(keep)[k])}'s window ({edges[k, 0]:.3f} to "
                f"{edges[k, -1]:.3f} s) lies "
                f"outside the session ({first:.3f} to {last:.3f} s) for {outside.size} trial(s);"
                " choose data.window_ms / data.align so every window is inside the recording")
        if cfg.signal:  # a recorded signal (calcium, EMG) instead of spike counts
            series = _find_series(nwb, cfg.signal, p, "data.signal")
            counts, step = _series_binned(series, edges, keep, cfg.signal, p)
            if cfg.units:
                warnings.append(f"{p}: data.units is for spikes; data.signal={cfg.signal} is "
                                "read whole")
            if step > 1.5 * bin_s:
                warnings.append(f"{p}: data.signal={cfg.signal} has a sample every "
                                f"{step * 1000:.0f} ms, fewer than one per {bin_s * 1000:g} ms "
                                f"bin: most bins are interpolated; set data.bin_size_ms="
                                f"{step * 1000:.0f} or more")
        else:
            counts = _count(spikes, edges)
            warnings += _unit_warnings(nwb.units, units, edges, p)
        warnings += _window_warnings(edges, p)
        conditions = None
        if cfg.condition:
            if cfg.condition not in trials.colnames:
                raise UserInputError(f"{p}: the trials table has no column '{cfg.condition}' "
                                     "(data.condition)")
            conditions = np.asarray(trials[cfg.condition][:])[keep]
        behavior = None
        if cfg.behavior:
            centres = 0.5 * (edges[:, :-1] + edges[:, 1:])
            series = _find_series(nwb, cfg.behavior, p)
            behavior = _series_at(series, centres, keep, cfg.behavior, p)
            if 0 < cfg.forward_bins < n_bins:  # nothing to decode in the forward bins
                behavior = behavior[:, : n_bins - cfg.forward_bins]
        # NLB's files as they are: a `heldout` units column marks the held-out neurons, and a
        # `split` trials column (train / val / test) the split; explicit settings win.
        if (units.size and "heldout" in nwb.units.colnames and cfg.heldout_neurons is None
                and cfg.heldout_fraction == 0):
            held = np.flatnonzero(np.asarray(nwb.units["heldout"][:], dtype=bool)[units])
            cfg = cfg.model_copy(update={"heldout_neurons": [int(i) for i in held]})
    ds = from_array(counts, layout="trials_time_neurons", conditions=conditions, cfg=cfg,
                    source=str(p), bin_size_s=bin_s, behavior=behavior, **inds)
    ds.meta["warnings"] = warnings + ds.meta.get("warnings", [])  # the file's own first
    return ds
