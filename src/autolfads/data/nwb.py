"""Neurodata Without Borders (NWB, what DANDI serves) -> a Dataset, with pynwb.

Spike times from the units table are counted in bins of data.bin_size_ms (default 10 ms) over a
window around each trial's alignment time: the trials table's column data.align (default
start_time) plus data.window_ms = [start, stop] (default: from 0 to the shortest trial's
duration). Optional: a trials column as the condition of each trial (data.condition), and a
time series (data.behavior, e.g. hand_vel, looked up in acquisition and in every processing
module) resampled at the bin centres as decode targets. The Neural Latents Benchmark's files
work as they are: their units' `heldout` column gives the held-out neurons and their trials'
`split` column the train / val / test split. Each problem is one UserInputError line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import Dataset
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


def _window(trials, cfg: DataConfig, p: Path) -> tuple[np.ndarray, float, float]:
    """(alignment time per trial, window start, window stop) in seconds."""
    columns = list(trials.colnames)
    if cfg.align not in (*columns, "start_time", "stop_time"):
        raise UserInputError(f"{p}: the trials table has no column '{cfg.align}' (data.align); "
                             f"columns: {', '.join(columns)}")
    align = np.asarray(trials[cfg.align][:], dtype=np.float64)
    if cfg.window_ms is not None:
        if len(cfg.window_ms) != 2 or cfg.window_ms[1] <= cfg.window_ms[0]:
            raise UserInputError(f"data.window_ms={cfg.window_ms}: expected [start, stop] in ms "
                                 "with start < stop, e.g. [-250, 450]")
        return align, cfg.window_ms[0] / 1000.0, cfg.window_ms[1] / 1000.0
    duration = np.asarray(trials["stop_time"][:]) - np.asarray(trials["start_time"][:])
    return np.asarray(trials["start_time"][:], dtype=np.float64), 0.0, float(duration.min())


def _find_series(nwb, name: str, p: Path):
    if name in nwb.acquisition:
        return nwb.acquisition[name]
    for module in nwb.processing.values():
        if name in module.data_interfaces:
            return module[name]
    raise UserInputError(f"{p}: no time series '{name}' (data.behavior) in acquisition or "
                         "processing")


def _series_at(series, times: np.ndarray) -> np.ndarray:
    """The series' values at `times` (any shape), by linear interpolation: times x dims."""
    data = np.asarray(series.data[:], dtype=np.float64)
    data = data.reshape(len(data), -1)
    t = (np.asarray(series.timestamps[:]) if series.timestamps is not None
         else series.starting_time + np.arange(len(data)) / series.rate)
    flat = times.ravel()
    out = np.stack([np.interp(flat, t, data[:, d]) for d in range(data.shape[1])], axis=-1)
    return out.reshape(*times.shape, data.shape[1])


def read_nwb(p: Path, cfg: DataConfig) -> Dataset:
    from autolfads.data.io import from_array

    with _open(p) as io:
        try:
            nwb = io.read()
        except Exception as e:  # noqa: BLE001  (hdmf raises many kinds for a file not NWB)
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise UserInputError(f"{p}: could not be read as NWB ({first})") from None
        if nwb.units is None or len(nwb.units) == 0:
            raise UserInputError(f"{p}: no units table (spike times); autolfads reads spiking "
                                 "data from NWB's units table")
        if nwb.trials is None or len(nwb.trials) == 0:
            raise UserInputError(f"{p}: no trials table; trials are cut from the session with "
                                 "its start_time (or data.align) column")
        spikes = [np.asarray(nwb.units["spike_times"][i]) for i in range(len(nwb.units))]
        align, start, stop = _window(nwb.trials, cfg, p)
        bin_s = (cfg.bin_size_ms or DEFAULT_BIN_MS) / 1000.0
        n_bins = int(round((stop - start) / bin_s))
        if n_bins < 1:
            raise UserInputError(f"{p}: the window ({start * 1000:g} to {stop * 1000:g} ms) is "
                                 f"shorter than one {bin_s * 1000:g} ms bin")
        edges = align[:, None] + start + bin_s * np.arange(n_bins + 1)  # trials x (bins + 1)
        last = max([float(s.max()) for s in spikes if s.size] +
                   [float(np.max(nwb.trials["stop_time"][:]))])
        outside = np.flatnonzero((edges[:, 0] < 0) | (edges[:, -1] > last) | ~np.isfinite(align))
        if outside.size:
            k = int(outside[0])
            raise UserInputError(
                f"{p}: trial {k}'s window ({edges[k, 0]:.3f} to {edges[k, -1]:.3f} s) lies "
                f"outside the session (0 to {last:.3f} s) for {outside.size} trial(s); choose "
                "data.window_ms / data.align so every window is inside the recording")
        counts = np.zeros((len(align), n_bins, len(spikes)), dtype=np.float32)
        for n, times in enumerate(spikes):
            for k in range(len(align)):
                counts[k, :, n] = np.histogram(times, bins=edges[k])[0]
        conditions = None
        if cfg.condition:
            if cfg.condition not in nwb.trials.colnames:
                raise UserInputError(f"{p}: the trials table has no column '{cfg.condition}' "
                                     "(data.condition)")
            conditions = np.asarray(nwb.trials[cfg.condition][:])
        behavior = None
        if cfg.behavior:
            centres = 0.5 * (edges[:, :-1] + edges[:, 1:])
            behavior = _series_at(_find_series(nwb, cfg.behavior, p), centres)
            if 0 < cfg.forward_bins < n_bins:  # nothing to decode in the forward bins
                behavior = behavior[:, : n_bins - cfg.forward_bins]
        # NLB's files as they are: a `heldout` units column marks the held-out neurons, and a
        # `split` trials column (train / val / test) the split; explicit settings win.
        if ("heldout" in nwb.units.colnames and cfg.heldout_neurons is None
                and cfg.heldout_fraction == 0):
            held = np.flatnonzero(np.asarray(nwb.units["heldout"][:], dtype=bool))
            cfg = cfg.model_copy(update={"heldout_neurons": [int(i) for i in held]})
        inds = {}
        if "split" in nwb.trials.colnames:
            split = np.asarray([str(v) for v in nwb.trials["split"][:]])
            inds = {f"{ours}_inds": np.flatnonzero(split == theirs)
                    for ours, theirs in (("train", "train"), ("valid", "val"), ("test", "test"))}
            if not len(inds["train_inds"]) or not len(inds["valid_inds"]):
                raise UserInputError(f"{p}: the trials table's split column needs 'train' and "
                                     "'val' trials")
            if not len(inds["test_inds"]):
                inds.pop("test_inds")
            other = len(split) - sum(len(v) for v in inds.values())
            if other:
                raise UserInputError(f"{p}: {other} trial(s) whose split is not train, val or "
                                     "test")
    return from_array(counts, layout="trials_time_neurons", conditions=conditions, cfg=cfg,
                      source=str(p), bin_size_s=bin_s, behavior=behavior, **inds)
