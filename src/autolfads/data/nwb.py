"""Neurodata Without Borders (NWB, what DANDI serves) -> a Dataset, with pynwb.

Spike times from the units table are counted in bins of data.bin_size_ms (default 10 ms) over a
window around each trial's alignment time: the trials table's column data.align (default
start_time) plus data.window_ms = [start, stop] (default: from the alignment to the end of the
shortest trial). Optional: a trials column as the condition of each trial (data.condition), and a
time series (data.behavior: a name such as hand_vel, or a path such as behavior/Position/hand_pos,
looked up in acquisition, in every processing module and inside their containers) averaged over
each bin (or, sampled more slowly than the bins, read at their centres) as decode targets.
The Neural Latents Benchmark's files work as they are: their units' `heldout` column gives the
held-out neurons and their trials' `split` column the train / val / test split (trials marked
'none' are left out). data.units keeps curated units (quality=good); data.signal bins a recorded
signal (calcium dF/F, EMG) instead of spikes, and data.intervals names another table of trials
(e.g. epochs). Each problem is one UserInputError line; what is valid but worth knowing (units
not recorded during some trials, overlapping windows) is a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import Dataset
from autolfads.data.nwb_series import (
    clock_of,
    find_series,
    series_at,
    series_binned,
    series_paths,
    transposed,
)
from autolfads.data.nwb_units import heldout, spike_times, unit_warnings, units_kept
from autolfads.data.validate import MIN_BINS, listed
from autolfads.errors import UserInputError

DEFAULT_BIN_MS = 10.0
NLB_SPLITS = ("train", "val", "test", "none")


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


def _window(trials, keep: np.ndarray, cfg: DataConfig, p: Path, warnings: list[str]
            ) -> tuple[np.ndarray, float, float]:
    """(alignment time per kept trial, window start, window stop) in seconds; what is worth
    knowing is appended to `warnings`."""
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
    if cfg.align not in ("start_time", "stop_time"):
        align = _absolute(align, trials, keep, cfg.align, p, warnings)
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
    trial = int(np.flatnonzero(keep)[k])
    if ends[k] < MIN_BINS * bin_s:
        raise UserInputError(
            f"{p}: trial {trial} (0-based) ends {ends[k] * 1000:.0f} ms "
            f"after its {cfg.align}, and the shortest trial sets the default window: fewer than "
            f"{MIN_BINS} bins of {bin_s * 1000:g} ms; set data.window_ms (e.g. [0, 700])")
    typical = float(np.median(ends))
    if ends[k] < 0.5 * typical:  # one aborted trial cuts every other short: said
        warnings.append(f"{p}: the window runs from each trial's {cfg.align} to the end of the "
                        f"shortest trial, {ends[k] * 1000:.0f} ms (trial {trial}, 0-based; the "
                        f"median trial lasts {typical * 1000:.0f} ms), so every trial is cut "
                        "there; set data.window_ms (or data.align) to choose the window")
    return align, 0.0, float(ends[k])


def _absolute(align: np.ndarray, trials, keep: np.ndarray, col: str, p: Path,
              warnings: list[str]) -> np.ndarray:
    """A data.align column as session times. NWB keeps event times in seconds from the
    session's start; a column of offsets from each trial's start (every value between 0 and the
    trial's length, almost none inside its trial) is read as such, and said."""
    starts, stops = (np.asarray(trials[c][:], dtype=np.float64)[keep]
                     for c in ("start_time", "stop_time"))
    has_end = np.isfinite(stops)
    inside = (align >= starts - 1e-6) & (align <= stops + 1e-6)
    if not has_end.any() or inside[has_end].mean() > 0.5:
        return align
    offsets = (align >= 0) & (align <= stops - starts + 1e-6)
    k = int(np.flatnonzero(has_end & ~inside)[0])
    example = (f"trial {int(np.flatnonzero(keep)[k])}: {col} {align[k]:.3f} s, the trial runs "
               f"{starts[k]:.3f} to {stops[k]:.3f} s")
    if len(align) >= 3 and inside[has_end].sum() <= max(1, 0.05 * len(align)) \
            and offsets[has_end].all():
        warnings.append(f"{p}: the trials column '{col}' (data.align) holds times from each "
                        f"trial's start, not from the session's ({example}): read as such")
        return starts + align
    warnings.append(f"{p}: {int((has_end & ~inside).sum())} trial(s) have their {col} "
                    f"(data.align) outside the trial ({example}); check that it is the event "
                    "you mean")
    return align


def _count(spikes: list[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Spikes per bin: trials x bins x units, each bin [edge, next edge)."""
    counts = np.zeros((edges.shape[0], edges.shape[1] - 1, len(spikes)), dtype=np.float32)
    for n, times in enumerate(spikes):
        counts[:, :, n] = np.diff(np.searchsorted(times, edges), axis=1)
    return counts


def _window_warnings(edges: np.ndarray, p: Path) -> list[str]:
    order = np.argsort(edges[:, 0])
    overlap = int((edges[order[1:], 0] < edges[order[:-1], -1]).sum())
    if not overlap:
        return []
    return [f"{p}: {overlap} trial window(s) overlap the next: their shared spikes count in "
            "both trials (also across training and validation trials)"]


def _no_units(nwb, p: Path) -> UserInputError:
    paths = series_paths(nwb)
    series = ", ".join(list(paths)[:6])
    binnable = [k for k, v in paths.items() if not _raw_ephys(v)]
    found = (f" (the file has time series: {series}; to bin one as the data: --set "
             f"data.signal={binnable[0]})") if binnable else ""
    if paths and not binnable:
        found = (f" (the file holds a raw recording: {series}; sort its spikes first, e.g. "
                 "with Kilosort or SpikeInterface, and add them as a units table: averaging "
                 "raw voltage into bins does not give spiking data)")
    return UserInputError(f"{p}: no units table (spike times); autolfads reads spiking data "
                          f"from NWB's units table{found}")


def _raw_ephys(series) -> bool:
    """A raw extracellular recording (kHz voltage), which is spike-sorted, not binned."""
    if type(series).__name__ != "ElectricalSeries":
        return False
    rate = getattr(series, "rate", None)
    if not rate and series.timestamps is not None and len(series.timestamps) > 1:
        rate = 1.0 / max(float(series.timestamps[1] - series.timestamps[0]), 1e-12)
    return float(rate or 0.0) >= 5000.0


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
    align, start, stop = _window(trials, keep, cfg, p, warnings)
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
    starts, stops = (a[np.isfinite(a)] for a in (np.asarray(trials[c][:], dtype=np.float64)
                                                 for c in ("start_time", "stop_time")))
    first = min([float(s[0]) for s in spikes if s.size] + [float(t) for t in starts],
                default=float(edges[:, 0].min()))
    last = max([float(s[-1]) for s in spikes if s.size] + [float(t) for t in stops],
               default=float(edges[:, -1].max()))
    outside = np.flatnonzero((edges[:, 0] < first) | (edges[:, -1] > last))
    if outside.size:
        k = int(outside[0])
        w0, w1, s0, s1 = _seconds(edges[k, 0], edges[k, -1], first, last)
        raise UserInputError(
            f"{p}: trial {int(np.flatnonzero(keep)[k])}'s window ({w0} to {w1} s) lies outside "
            f"the session ({s0} to {s1} s) for {outside.size} trial(s); choose "
            "data.window_ms / data.align so every window is inside the recording")
    heard = [s[-1] for s in spikes if s.size]
    trials_end = float(stops.max()) if stops.size else 0.0
    if heard and trials_end > 0 and max(heard) > 20 * trials_end:  # ms beside seconds?
        total = sum(s.size for s in spikes)
        t0 = float(starts.min()) if starts.size else first
        inside = sum(int(np.searchsorted(s, trials_end) - np.searchsorted(s, t0)) for s in spikes)
        if inside < 0.005 * total:  # (a task, then a long spontaneous stretch, is not this)
            warnings.append(f"{p}: the spike times run to {max(heard):.6g} s but the trials end "
                            f"at {trials_end:.6g} s, and {100 * inside / total:.2g}% of the "
                            "spikes fall in the trials' span: are the spike times in ms? NWB "
                            "keeps times in seconds")
    return edges


def _seconds(*times: float) -> list[str]:
    """Times with as many decimals (3 or more) as it takes to tell different ones apart."""
    d = 3
    while d < 9 and len({f"{t:.{d}f}" for t in times}) < len(set(times)):
        d += 1
    return [f"{t:.{d}f}" for t in times]


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
    split = np.asarray([v.decode() if isinstance(v, bytes) else str(v)
                        for v in trials["split"][:]])
    if not set(split) <= set(NLB_SPLITS):  # a lab's own column of that name
        return np.ones(n, dtype=bool), {}, [
            f"{p}: the trials' split column holds {', '.join(sorted(set(split))[:4])}, not "
            f"NLB's {' / '.join(NLB_SPLITS)}: not used (the split is data.split's)"]
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
        units, notes = (units_kept(nwb.units, cfg.units, p) if has_units and not cfg.signal
                        else (np.zeros(0, dtype=bool), []))
        spikes, said = spike_times(nwb.units, units, p) if units.size else ([], [])
        notes += said
        bin_s = (cfg.bin_size_ms or DEFAULT_BIN_MS) / 1000.0
        signal = find_series(nwb, cfg.signal, p, "data.signal") if cfg.signal else None
        beh_series = find_series(nwb, cfg.behavior, p) if cfg.behavior else None
        notes += [f"{p}: {key}={name} is stored as channels x time ({series.data.shape[0]} x "
                  f"{series.data.shape[1]}); NWB's order is time x channels: read transposed"
                  for key, name, series in (("data.signal", cfg.signal, signal),
                                            ("data.behavior", cfg.behavior, beh_series))
                  if series is not None and transposed(series)]
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
            warnings += unit_warnings(nwb.units, units, edges, p)
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
            if conditions.dtype.kind == "f" and not np.isfinite(conditions).all():
                rows = np.flatnonzero(keep)[~np.isfinite(conditions)]
                raise UserInputError(f"{p}: {rows.size} trial(s) have no {cfg.condition} (NaN): "
                                     f"trials {listed(rows)} (0-based); choose another "
                                     "data.condition column, or leave it out (conditions only "
                                     "group trials in the report)")
        behavior = None
        if beh_series is not None:
            behavior, bridged = series_at(beh_series, edges, keep, cfg.behavior, p)
            warnings += [bridged] if bridged else []
            if trials is not None and 0 < cfg.forward_bins < n_bins:  # nothing to decode there
                behavior = behavior[:, : n_bins - cfg.forward_bins]
        # NLB's files as they are: a `heldout` units column marks the held-out neurons, and a
        # `split` trials column (train / val / test) the split; explicit settings win.
        if (units.size and "heldout" in nwb.units.colnames and cfg.heldout_neurons is None
                and cfg.heldout_fraction == 0):
            cfg = cfg.model_copy(update={"heldout_neurons": heldout(nwb.units, units, p)})
    if trials is None:  # the session's one "trial" is the recording
        counts, behavior = counts[0], None if behavior is None else behavior[0]
    ds = from_array(counts, layout="trials_time_neurons", conditions=conditions, cfg=cfg,
                    source=str(p), bin_size_s=bin_s, behavior=behavior, **inds)
    ds.meta["warnings"] = warnings + ds.meta.get("warnings", [])  # the file's own first
    # Where the outputs sit in the file (rundir/outputs.py): rows left out, a recording's start.
    if trials is not None and not keep.all():
        ds.meta["source_trials"] = np.flatnonzero(keep)
    if units.size and not units.all():
        ds.meta["source_units"] = np.flatnonzero(units)
    if trials is None:
        ds.meta["recording_start_s"] = float(edges[0, 0])
    return ds
