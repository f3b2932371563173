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

from pathlib import Path

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import Dataset
from autolfads.data.nwb_series import clock_of, find_series, series_at, series_binned, series_paths
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
    series = ", ".join(list(series_paths(nwb))[:6])
    first = series.split(", ")[0]
    found = (f" (the file has time series: {series}; to bin one as the data: --set "
             f"data.signal={first})") if series else ""
    return UserInputError(f"{p}: no units table (spike times); autolfads reads spiking data "
                          f"from NWB's units table{found}")


def _trials_table(nwb, name: str, p: Path) -> tuple[object | None, str]:
    """The intervals table whose rows are the trials (data.intervals), and a note; None when
    the file has no trials (a continuous session) and data.intervals was not set."""
    tables = dict(nwb.intervals or {})
    table = tables.get(name)
    if table is not None and len(table) > 0:
        return table, ""
    others = [n for n, t in tables.items() if n != name and len(t) > 0]
    found = (f" (the file has other intervals: {', '.join(others)}; choose one with --set "
             f"data.intervals={others[0]})") if others else ""
    if name == DataConfig().intervals:  # no trials at all: the session is one recording
        return None, (f"{p}: no {name} table: the session is read as one continuous recording"
                      f"{found}")
    raise UserInputError(f"{p}: no {name} table{found}; trials are cut from the session with "
                         "its start_time (or data.align) column")


def _trial_edges(trials, keep: np.ndarray, spikes: list[np.ndarray], cfg: DataConfig,
                 bin_s: float, p: Path, warnings: list[str]) -> np.ndarray:
    """Bin edges of each kept trial's window, trials x (bins + 1), inside the session; what
    is worth knowing is appended to `warnings`."""
    align, start, stop = _window(trials, keep, cfg, p)
    n_bins = int(round((stop - start) / bin_s))
    if n_bins < 1:
        raise UserInputError(f"{p}: the window ({start * 1000:g} to {stop * 1000:g} ms) is "
                             f"shorter than one {bin_s * 1000:g} ms bin")
    edges = align[:, None] + start + bin_s * np.arange(n_bins + 1)
    if abs(n_bins * bin_s - (stop - start)) > 1e-3 * bin_s:  # said, not silently rounded
        warnings.append(f"{p}: the window ({start * 1000:g} to {stop * 1000:g} ms) is not a whole "
                        f"number of {bin_s * 1000:g} ms bins; read as {start * 1000:g} to "
                        f"{(start + n_bins * bin_s) * 1000:g} ms ({n_bins} bins)")
    if cfg.signal:  # the signal's own span is checked when it is binned
        return edges
    # The session: from its first event (a spike, a trial) to its last, not from clock 0.
    starts, stops = (np.asarray(trials[c][:], dtype=np.float64) for c in
                     ("start_time", "stop_time"))
    first = min([float(s[0]) for s in spikes if s.size] + [float(starts.min())])
    last = max([float(s[-1]) for s in spikes if s.size] + [float(stops.max())])
    outside = np.flatnonzero((edges[:, 0] < first) | (edges[:, -1] > last))
    if outside.size:
        k = int(outside[0])
        raise UserInputError(
            f"{p}: trial {int(np.flatnonzero(keep)[k])}'s window ({edges[k, 0]:.3f} to "
            f"{edges[k, -1]:.3f} s) lies outside the session ({first:.3f} to {last:.3f} s) for "
            f"{outside.size} trial(s); choose data.window_ms / data.align so every window is "
            "inside the recording")
    return edges


def _session(spikes: list[np.ndarray], signal, behavior, cfg: DataConfig, bin_s: float,
             p: Path) -> tuple[np.ndarray, list[str]]:
    """A session without trials as one window: from its first spike to its last (or over the
    data.signal series; within data.behavior's span), in whole bins. Returns (edges 1 x
    (bins + 1), notes)."""
    notes = [f"{p}: data.{k} is for trials; the session has none, so it is ignored"
             for k in ("window_ms", "align")
             if getattr(cfg, k) != getattr(DataConfig(), k)]
    if signal is not None:
        clock = clock_of(signal, cfg.signal, "data.signal", p)
        first, last = clock.first, clock.last
    else:
        heard = [s for s in spikes if s.size]
        if not heard:
            raise UserInputError(f"{p}: the units hold no spikes")
        first, last = min(s[0] for s in heard), max(s[-1] for s in heard)
    if behavior is not None:  # decode targets must be recorded over every bin: read there
        b = clock_of(behavior, cfg.behavior, "data.behavior", p)
        if b.first > first or b.last < last:
            first, last = max(first, b.first), min(last, b.last)
            notes.append(f"{p}: data.behavior={cfg.behavior} covers {b.first:.3f} to "
                         f"{b.last:.3f} s; the recording is read over that span only "
                         f"({max(last - first, 0):.3f} s)")
    n_bins = int((last - first) / bin_s)  # whole bins; a last partial bin is left out
    if n_bins < MIN_BINS:
        raise UserInputError(f"{p}: the session lasts {max(last - first, 0):.3f} s, fewer than "
                             f"{MIN_BINS} bins of {bin_s * 1000:g} ms")
    return (first + bin_s * np.arange(n_bins + 1))[None], notes


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
        trials, note = _trials_table(nwb, cfg.intervals, p)
        units, notes = (_units_kept(nwb.units, cfg.units, p) if has_units and not cfg.signal
                        else (np.zeros(0, dtype=bool), []))
        spikes = [np.sort(np.asarray(nwb.units["spike_times"][int(i)], dtype=np.float64))
                  for i in np.flatnonzero(units)]
        bin_s = (cfg.bin_size_ms or DEFAULT_BIN_MS) / 1000.0
        signal = find_series(nwb, cfg.signal, p, "data.signal") if cfg.signal else None
        beh_series = find_series(nwb, cfg.behavior, p) if cfg.behavior else None
        if trials is None:  # one continuous recording, cut into segments by from_array
            keep, inds = np.ones(1, dtype=bool), {}
            edges, said = _session(spikes, signal, beh_series, cfg, bin_s, p)
            warnings = [note, *notes, *said]
        else:
            keep, inds, warnings = _nlb_split(trials, p)
            warnings = notes + warnings
            edges = _trial_edges(trials, keep, spikes, cfg, bin_s, p, warnings)
        n_bins = edges.shape[1] - 1
        if signal is not None:  # a recorded signal (calcium, EMG) instead of spike counts
            counts, step = series_binned(signal, edges, keep, cfg.signal, p)
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
            if trials is None:
                raise UserInputError(f"{p}: data.condition={cfg.condition} names a trials "
                                     "column, but the file has no trials table")
            if cfg.condition not in trials.colnames:
                raise UserInputError(f"{p}: the trials table has no column '{cfg.condition}' "
                                     "(data.condition)")
            conditions = np.asarray(trials[cfg.condition][:])[keep]
        behavior = None
        if beh_series is not None:
            centres = 0.5 * (edges[:, :-1] + edges[:, 1:])
            behavior = series_at(beh_series, centres, keep, cfg.behavior, p)
            if trials is not None and 0 < cfg.forward_bins < n_bins:  # nothing to decode there
                behavior = behavior[:, : n_bins - cfg.forward_bins]
        # NLB's files as they are: a `heldout` units column marks the held-out neurons, and a
        # `split` trials column (train / val / test) the split; explicit settings win.
        if (units.size and "heldout" in nwb.units.colnames and cfg.heldout_neurons is None
                and cfg.heldout_fraction == 0):
            held = np.flatnonzero(np.asarray(nwb.units["heldout"][:], dtype=bool)[units])
            cfg = cfg.model_copy(update={"heldout_neurons": [int(i) for i in held]})
    if trials is None:  # the session's one "trial" is the recording
        counts, behavior = counts[0], None if behavior is None else behavior[0]
    ds = from_array(counts, layout="trials_time_neurons", conditions=conditions, cfg=cfg,
                    source=str(p), bin_size_s=bin_s, behavior=behavior, **inds)
    ds.meta["warnings"] = warnings + ds.meta.get("warnings", [])  # the file's own first
    return ds
