"""Calcium fluorescence (dF/F) -> deconvolved event amplitudes, with OASIS (Friedrich, Zhou &
Paninski 2017; the `oasis-deconv` package), for the zero-inflated Gamma observation model.

For each neuron, from all of its frames together (every trial, so that short trials still give
stable estimates):
- the indicator's decay as an AR(1) coefficient g, and the noise SD sn, by OASIS's
  `estimate_parameters` (autocovariance and power spectrum); or g = exp(-1 / (tau_decay * frame
  rate)) when the decay time constant is given;
- the baseline, as the neuron's 8th percentile (a floor that events do not move).
Then each trial is deconvolved on its own with those values (OASIS AR(1), no sparsity penalty)
and events smaller than `threshold_sd` * sn are dropped (set to exactly zero): what is left are
the events the zero-inflated Gamma's threshold sits under. Trials keep their order and shape.

Why AR(1), not AR(2) with a rise time: on the synthetic calcium data (rise 50 ms, decay 400 ms,
30 Hz) OASIS's AR(2) returned negative event amplitudes on every neuron, with the true time
constants as with estimated ones (whose two roots often coincide, where its update divides by
zero); AR(1) gave none, and events whose smoothing matched the true rates better (R^2 0.45 vs
0.38 with estimated AR(2)). At imaging rates the rise lasts one or two frames.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.dataset import Dataset
from autolfads.data.validate import listed
from autolfads.errors import UserInputError

BASELINE_PERCENTILE = 8.0


@dataclass(frozen=True)
class DeconvolveOptions:
    tau_decay_s: float | None = None  # indicator decay time constant; None: estimated per neuron
    threshold_sd: float = 1.0  # events below this many noise SDs are set to zero

    def __post_init__(self) -> None:
        if self.tau_decay_s is not None and not self.tau_decay_s > 0:
            raise UserInputError(f"--tau-decay-s {self.tau_decay_s} (data.tau_decay_s): the "
                                 "decay time constant must be positive, in seconds (e.g. 0.4)")
        if not self.threshold_sd >= 0:
            raise UserInputError(f"--threshold-sd {self.threshold_sd} "
                                 "(data.event_threshold_sd): must be 0 or more noise SDs")


def deconvolve_warnings(traces: np.ndarray, events: np.ndarray) -> list[str]:
    """What to say about a deconvolution: input that looks like spike counts already, and
    channels left without a single event."""
    out = []
    if np.array_equal(traces, np.round(traces)) and traces.min() >= 0:
        out.append("warning: the input is whole non-negative numbers, like spike counts; "
                   "deconvolution is for calcium fluorescence traces (train on counts directly)")
    empty = np.flatnonzero(~(events > 0).any(axis=(0, 1)))
    if empty.size:
        shown = listed(empty)
        out.append(f"warning: {empty.size} of {events.shape[2]} channels have no events "
                   f"(0-based: {shown}): flat or noise-only traces; remove them before training")
    return out


def _oasis():
    try:
        from oasis.functions import deconvolve, estimate_parameters
    except ImportError:
        raise UserInputError(
            "deconvolution needs the oasis-deconv package (GPL-3.0, installed with autolfads' "
            "[calcium] extra): pip install oasis-deconv") from None
    return deconvolve, estimate_parameters


def deconvolve_traces(traces: np.ndarray, options: DeconvolveOptions = DeconvolveOptions(),
                      frame_rate_hz: float | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      what: str = "deconvolve") -> np.ndarray:
    """traces (trials, time, neurons) dF/F -> event amplitudes of the same shape, >= 0, exact
    zeros where there is no event. progress(done, total) is called after each neuron; `what`
    begins every error message (the file's name)."""
    deconvolve, estimate_parameters = _oasis()
    y = np.asarray(traces, dtype=np.float64)
    if y.ndim != 3 or y.shape[1] < 10:
        raise UserInputError(f"{what}: expected trials x time x neurons with at least 10 "
                             f"frames per trial, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise UserInputError(f"{what}: the traces hold NaN/Inf values; remove or interpolate "
                             "them first")
    given = options.tau_decay_s is not None
    if given and frame_rate_hz is None:
        raise UserInputError(f"{what}: a decay time constant needs the frame rate: "
                             "bin_size_ms in the file, or --bin-size-ms (data.bin_size_ms)")
    events = np.zeros_like(y)
    n_trials, _, n_neurons = y.shape
    for n in range(n_neurons):
        frames = y[:, :, n].ravel()
        if np.ptp(frames) == 0:  # a flat trace has no events (and no noise to estimate)
            continue
        with warnings.catch_warnings():  # OASIS warns about short or noisy traces; we threshold
            warnings.simplefilter("ignore")
            g_est, sn = estimate_parameters(frames, p=1)
            g = math.exp(-1.0 / (options.tau_decay_s * frame_rate_hz)) if given else g_est[0]
            base = np.percentile(frames, BASELINE_PERCENTILE)
            for i in range(n_trials):
                s = deconvolve(y[i, :, n] - base, g=(float(g),), penalty=None, lam=0)[1]
                events[i, :, n] = np.where(s >= options.threshold_sd * sn, s, 0.0)
        if progress is not None:
            progress(n + 1, n_neurons)
    return events.astype(np.float32)


def deconvolve_dataset(ds: Dataset, options: DeconvolveOptions = DeconvolveOptions(),
                       progress: Callable[[int, int], None] | None = None) -> Dataset:
    """The dataset with its traces replaced by deconvolved events (split, order, truth kept)."""
    frame_rate = None if ds.bin_size_s is None else 1.0 / ds.bin_size_s
    traces, seg = ds.all_data(), ds.segments
    if seg is not None:  # a continuous recording: deconvolved whole, then cut again the same way
        traces = seg.join(traces)[None]
    events = deconvolve_traces(traces, options, frame_rate, progress,
                               what=f"deconvolve {ds.source}")
    if seg is not None:
        events = seg.cut(events[0])
    # A truth that came with the traces (synthetic data: spike rates) is in other units than
    # the events: only scale-free comparisons with it mean anything.
    meta = {**ds.meta, "truth_scale_free": ds.has_truth}
    return replace(ds, train_data=events[ds.train_inds], valid_data=events[ds.valid_inds],
                   test_data=events[ds.test_inds] if ds.has_test else None,
                   source=f"{ds.source} (deconvolved)", meta=meta)


def deconvolve_if_asked(ds: Dataset, cfg: DataConfig,
                        say: Callable[[str], None] | None = None) -> Dataset:
    """`ds` as the model sees it: deconvolved into events when cfg.deconvolve (data config)."""
    if not cfg.deconvolve:
        return ds
    if say is not None:
        say(f"deconvolving {ds.n_neurons} neurons' calcium traces into events (OASIS)")
    events = deconvolve_dataset(ds, DeconvolveOptions(cfg.tau_decay_s, cfg.event_threshold_sd))
    if say is not None:
        for line in deconvolve_warnings(ds.all_data(), events.all_data()):
            say(line)
    return events
