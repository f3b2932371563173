"""Everything the report shows, gathered from a run directory (and the run's input data).

The outputs hold rates, factors, inputs and (for synthetic data) the true rates, but not the
spikes: rasters, bits/spike and the smoothing baseline need the input data, which is found from
run.json or the outputs' `source` attribute (a file path, or the built-in Lorenz data). When it
cannot be found or no longer matches the outputs, those parts are left out with a note saying why.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from autolfads.data.dataset import Dataset
from autolfads.data.segments import Segments, Stretch
from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri
from autolfads.rundir.location import Location
from autolfads.rundir.outputs import Outputs, read_outputs
from autolfads.rundir.pbt_log import HPLog, read_decisions, read_hp_log
from autolfads.rundir.records import Decision

LORENZ_SOURCE = re.compile(r"built-in Lorenz \(seed (\d+)\)")


@dataclass
class RunView:
    rd: Location
    config: dict
    metrics: dict | None
    pbt: bool
    log: HPLog
    decisions: dict[tuple[int, int], Decision]
    best: dict | None  # pbt/best_worker.json
    train_log: list[dict[str, float]]
    outputs: Outputs | None
    dataset: Dataset | None
    notes: dict[str, str] = field(default_factory=dict)  # why a part is missing, by topic
    stop_message: str | None = None  # pbt/interrupted.json's: how an interrupted run goes on

    @property
    def recording(self) -> bool:
        """A continuous recording (its segments are the trials), forward bins or not."""
        out = self.outputs
        return (out is not None and out.get("segment_starts") is not None) or (
            self.dataset is not None and self.dataset.segments is not None)

    @cached_property
    def segments(self) -> Segments | None:
        """A recording's segments as its scores merge them (recording_segments), read once."""
        return recording_segments(self)

    @property
    def interrupted(self) -> str | None:
        """How an interrupted run says to continue (None: finished, or running)."""
        return None if self.finished else self.stop_message

    @property
    def finished(self) -> bool:
        if self.metrics is None:
            return False
        if not self.pbt or not self.log.rows:
            return True
        # A finished run continued with --resume keeps its old metrics.json until it ends again.
        return int(self.metrics.get("generations", 0)) >= max(self.log.generations)

    @property
    def bin_ms(self) -> float | None:
        if self.outputs is not None and self.outputs.bin_size_ms:
            return self.outputs.bin_size_ms
        if self.dataset is not None and self.dataset.bin_size_s:
            return self.dataset.bin_size_s * 1000.0
        v = (self.config.get("data") or {}).get("bin_size_ms")
        return float(v) if isinstance(v, (int, float)) and v > 0 else None

    @property
    def observation(self) -> str:
        """The run's observation model (runs from before there was a choice: poisson)."""
        name = (self.metrics or {}).get("observation") or self.section("model").get("observation")
        return name if name in ("gamma", "zero_inflated_gamma", "gaussian") else "poisson"

    @property
    def truth_scale_free(self) -> bool:
        """The truth is in other units than the data (spike rates behind deconvolved calcium
        events, spikes/s against counts; data/content.py): metrics.json then gives
        correlations only."""
        if self.dataset is not None and self.dataset.meta.get("truth_scale_free"):
            return True
        m = self.metrics or {}
        return "r2_rates" in m and "r2_per_neuron" not in m

    @property
    def truth_flat(self) -> bool:
        """The truth varies only between channels (data/content.py): metrics.json leaves R^2
        out, and so does the report."""
        if self.dataset is not None and self.dataset.meta.get("truth_flat"):
            return True
        return bool((self.metrics or {}).get("truth_flat"))

    @property
    def counts(self) -> bool:
        """Spike counts (rasters, rates in Hz, bits/spike), not a continuous signal."""
        return self.observation == "poisson"

    def section(self, name: str) -> dict:
        v = self.config.get(name)
        return v if isinstance(v, dict) else {}

    def elapsed_s(self) -> float | None:
        """Wall time of a finished run, or time since the run started for a live one."""
        if self.metrics and self.finished:
            return float(self.metrics.get("wall_s", math.nan))
        if self.rd.remote or not self.rd.exists(layout.CONFIG):
            return None
        return time.time() - (self.rd.local / layout.CONFIG).stat().st_mtime


def gather(rd: Location, dataset: Dataset | None = None) -> RunView:
    notes: dict[str, str] = {}
    try:
        outputs = read_outputs(rd)
    except UserInputError as e:
        outputs, notes["outputs"] = None, str(e)
    if outputs is None and "outputs" not in notes:
        notes["outputs"] = ("output/lfads_output.h5 is written when the run finishes; run "
                            "`autolfads report DIR` then to add rates, factors and inputs")
    config = rd.config()
    if dataset is None:
        dataset, why = find_dataset(rd, outputs, config)
        if why:
            notes["data"] = why
    if outputs is not None and dataset is not None:
        mismatch = _mismatch(dataset, outputs)
        if mismatch:
            dataset, notes["data"] = None, mismatch
    return RunView(rd, config, rd.metrics(), rd.is_pbt(), read_hp_log(rd), read_decisions(rd),
                   rd.read_json(layout.BEST_WORKER), rd.train_log(), outputs, dataset, notes,
                   (rd.read_json(layout.INTERRUPTED) or {}).get("message"))


def find_dataset(rd: Location, outputs: Outputs | None,
                 config: dict | None = None) -> tuple[Dataset | None, str]:
    """The run's input data, or None and a sentence saying why not. `config`: config.yaml as
    already read by the caller (read here otherwise)."""
    from autolfads.config import DataConfig

    config = rd.config() if config is None else config
    try:
        cfg = DataConfig(**(config.get("data") or {}))
    except Exception:  # config from another version: the defaults still read most files
        cfg = DataConfig()
    run = rd.read_json(layout.RUN_JSON) or {}
    why = "the run does not record where its data came from (data passed from Python)"
    if run.get("data_in_memory"):  # its `source` is a label ("array"), not a file
        return None, f"spikes not shown: {why}"
    recorded = run.get("data")
    source = outputs.attrs.get("source") if outputs is not None else None
    for src in (recorded, source):
        if not isinstance(src, str) or not src:
            continue
        m = LORENZ_SOURCE.fullmatch(src)
        if m:
            from autolfads.data.synthetic import lorenz_dataset

            return lorenz_dataset(seed=int(m.group(1)), cfg=cfg), ""
        if not is_uri(src) and not Path(src).is_file():
            why = f"the data file {src} is no longer there"
            continue
        from autolfads.data.deconvolve import deconvolve_if_asked
        from autolfads.data.io import load_dataset

        try:
            with Location(src).local_copy() as path:
                return deconvolve_if_asked(load_dataset(path, cfg), cfg), ""
        except UserInputError as e:
            why = f"the data file could not be read again: {e}"
    return None, f"spikes not shown: {why}"


def _mismatch(ds: Dataset, out: Outputs) -> str:
    rates, tr, va = out.get("rates"), out.get("train_inds"), out.get("valid_inds")
    if rates is None:
        return ""
    if rates.shape != (ds.n_trials, ds.n_time, ds.n_neurons):
        return (f"spikes not shown: the data ({ds.summary()}) no longer matches the outputs "
                f"(rates {rates.shape[0]} x {rates.shape[1]} x {rates.shape[2]})")
    if tr is not None and va is not None and not (
            np.array_equal(np.sort(tr), np.sort(ds.train_inds))
            and np.array_equal(np.sort(va), np.sort(ds.valid_inds))):
        return "spikes not shown: the data's train/valid split differs from the run's"
    return ""


def example_trials(view: RunView, n: int = 4) -> list[int]:
    """A few validation trials spread over the session (held-out trials show generalisation)."""
    out = view.outputs
    assert out is not None
    pool = out.get("valid_inds")
    if pool is None or not len(pool):
        pool = np.arange(out.arrays["rates"].shape[0])
    pool = np.sort(np.asarray(pool))
    pick = np.unique(np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int))
    return [int(pool[i]) for i in pick]


def recording_stretches(view: RunView, seg: Segments, n: int = 2) -> list[Stretch]:
    """The stretches of a recording the page shows: one around each example (validation)
    segment, with every held-out segment in them marked."""
    out = view.outputs
    assert out is not None
    held: dict[int, str] = {}
    for split in ("valid", "test"):
        inds = out.get(f"{split}_inds")
        held.update({int(i): split for i in (inds if inds is not None else [])})
    return [seg.stretch(k, held) for k in example_trials(view, n)]


def spikes_and_truth(view: RunView) -> tuple[np.ndarray | None, np.ndarray | None]:
    truth = view.outputs.get("truth") if view.outputs is not None else None
    spikes = None
    if view.dataset is not None:
        spikes = view.dataset.all_data()
        if truth is None:
            truth = view.dataset.all_truth()
    return spikes, truth


def conditions(view: RunView) -> np.ndarray | None:
    c = view.outputs.get("conditions") if view.outputs is not None else None
    if c is None and view.dataset is not None:
        c = view.dataset.conditions
    if c is None:
        return None
    c = np.asarray(c).ravel()
    # Text labels are coloured as numbers: their index in sorted order.
    return c if c.dtype.kind in "iuf" else np.unique(c.astype(str), return_inverse=True)[1]


def metric_rows(view: RunView) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The R^2 / bits-per-spike table: LFADS on all/train/valid trials and the smoothing
    baseline. Computed from the outputs (and spikes when found); metrics.json fills in what
    cannot be recomputed. Also returns the rate arrays for the scatter plot."""
    from autolfads.analysis.metrics import (
        bits_per_spike,
        r2_per_neuron,
        r2_rates,
        smoothing_baseline,
    )

    m = view.metrics or {}
    out = view.outputs
    # metrics.json leaves out 1 - SSE/SST where the truth is in other units (deconvolved calcium
    # against spike rates): so does this table.
    scale_free = view.truth_scale_free
    if out is None or out.get("rates") is None:
        rows = [{"method": "LFADS", "trials": "validation", "r2": m.get("r2_rates_valid"),
                 "r2n": None, "bps": m.get("bps_valid")},
                {"method": "LFADS", "trials": "all", "r2": m.get("r2_rates"),
                 "r2n": m.get("r2_per_neuron"), "bps": None}]
        if "r2_smoothing" in m:
            rows.append({"method": "Gaussian smoothing", "trials": "all",
                         "r2": m.get("r2_smoothing"), "r2n": None, "bps": None})
        return ([r for r in rows if any(r[k] is not None for k in ("r2", "r2n", "bps"))], {})
    rates = out.arrays["rates"]
    spikes, truth = spikes_and_truth(view)
    if view.truth_flat:
        truth = None
    seg = view.segments

    def whole(a: np.ndarray | None, merge: bool = False) -> np.ndarray | None:
        """All trials as recorded (Dataset.as_recorded): a recording's segments as one."""
        return a if a is None or seg is None else seg.as_recording(a, merge)

    spikes_all, truth_all = whole(spikes), whole(truth)
    splits = {"all": np.arange(len(rates))}
    for split in ("train", "valid", "test"):
        if out.get(f"{split}_inds") is not None and len(out.arrays[f"{split}_inds"]):
            splits[split] = np.asarray(out.arrays[f"{split}_inds"])
    names = {"all": "all", "train": "train", "valid": "validation",
             "test": "test (held out from training and selection)"}
    if seg is not None:
        names["all"] = "all (the recording, segments merged)"

    def row(method: str, r: np.ndarray, split: str, r_bps: np.ndarray | None = None) -> dict:
        """Scores of rates `r`: per trial, or for split "all" over all the data as recorded."""
        r_bps = r if r_bps is None else r_bps
        s, t = spikes_all, truth_all
        if split != "all":
            idx = splits[split]
            r, r_bps = r[idx], r_bps[idx]
            s, t = (None if spikes is None else spikes[idx]), (None if truth is None
                                                             else truth[idx])
        return {
            "method": method, "trials": names[split],
            "r2": r2_rates(r, t) if t is not None else None,
            "r2n": r2_per_neuron(r, t) if t is not None and not scale_free else None,
            "bps": bits_per_spike(r_bps, s) if s is not None and view.counts else None,
        }

    rates_all = whole(rates, merge=True)
    rows = [row("LFADS", rates_all if s == "all" else rates, s)
            for s in ("all", "train", "valid", "test") if s in splits]
    panels = {"LFADS": rates_all}
    if spikes is not None:
        # A recording is smoothed whole (each segment alone would cut the kernel at its edges);
        # a held-out segment's row takes its stretch, smoothed with the bins beside it, which
        # LFADS never sees: a conservative comparison.
        def per_trial(a: np.ndarray | None) -> np.ndarray | None:
            return a if a is None or seg is None else seg.cut(a[0])

        base = smoothing_baseline(spikes_all, truth_all)
        sigma = base["sigma_bins"]
        label = f"Gaussian smoothing (sigma {sigma:g} bins)"
        train = splits.get("train", splits["all"])
        bps_all = None
        if view.counts:  # width and weight chosen on training trials (a recording's bins)
            bps_all, how = smoothing_for_bps(spikes_all, train if seg is None
                                             else seg.covered(train)[None])
            label += f"; for bits/spike: {how}"
        rows += [row(label, base["rates"], "all", bps_all)]
        rows += [row(label, per_trial(base["rates"]), s, per_trial(bps_all))
                 for s in ("valid", "test") if s in splits]
        panels[f"smoothing (sigma {sigma:g} bins)"] = base["rates"]
    elif "r2_smoothing" in m:
        rows.append({"method": f"Gaussian smoothing (sigma {m.get('smoothing_sigma_bins', '?')} "
                     "bins, from metrics.json)", "trials": names["all"], "r2": m["r2_smoothing"],
                     "r2n": None, "bps": None})
    if truth is None:
        return rows, {}
    return rows, {**panels, "__truth__": truth_all}


def recording_segments(view: RunView) -> Segments | None:
    """A continuous recording's segments, read from its outputs (the data file may be gone);
    None for trial data, and with forward bins (unobserved at every segment's end), where the
    segments are scored as segments (Dataset.as_recorded)."""
    out = view.outputs
    starts = out.get("segment_starts") if out is not None else None
    # (outputs from before forward_bins was recorded with them: the run's config says)
    forward = out.attrs.get("forward_bins") if out is not None else None
    if forward is None:
        forward = view.section("data").get("forward_bins") or 0
    if starts is None or forward:
        return None
    a = out.attrs
    return Segments(np.asarray(starts, dtype=np.int64), int(a["segment_bins"]),
                    int(a["segment_overlap"]), int(a["recording_bins"]))


def smooth_without_own_bin(spikes: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Gaussian smoothing along time that leaves each bin's own count out of its estimate:
    a rate scored by bits/spike must not contain the very spike it is scored on."""
    from scipy.ndimage import convolve1d

    x = np.asarray(spikes, dtype=np.float64)
    half = max(1, int(np.ceil(4 * sigma_bins)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_bins) ** 2)
    k[half] = 0.0
    num = convolve1d(x, k, axis=1, mode="constant", cval=0.0)
    mass = convolve1d(np.ones(x.shape[1]), k, mode="constant", cval=0.0)
    return num / np.maximum(mass, 1e-12).reshape(1, -1, *([1] * (x.ndim - 2)))


def smoothing_for_bps(spikes: np.ndarray, train: np.ndarray,
                      sigmas: tuple[float, ...] = (1, 2, 3, 4, 6, 8),
                      weights: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9, 1.0)
                      ) -> tuple[np.ndarray, str]:
    """The smoothing baseline's rates for bits/spike: own bin left out, mixed with the neuron's
    mean rate (a bin whose neighbours are silent would otherwise get rate ~0, and one spike there
    costs ~20 nats). Width and weight are chosen by likelihood on the training trials only
    (`train`: their indices, or a trials x bins mask)."""
    from autolfads.analysis.metrics import RATE_FLOOR

    mean = spikes[train].reshape(-1, spikes.shape[-1]).mean(axis=0)
    best = (-np.inf, None, "")
    for sigma in sigmas:
        loo = smooth_without_own_bin(spikes, sigma)
        for w in weights:
            rates = w * loo + (1 - w) * mean
            r = np.maximum(rates[train], RATE_FLOOR)
            ll = float((spikes[train] * np.log(r) - r).sum())  # log(y!) is the same for all
            if ll > best[0]:
                best = (ll, rates, f"sigma {sigma:g} bins, weight {w:g}")
    return best[1], best[2]
