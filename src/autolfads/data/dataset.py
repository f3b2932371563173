"""The Dataset: recorded activity (spike counts or continuous signals) split into train/valid
trials, with the bookkeeping to undo the split.

Internally every array is trials x time x neurons (the LFADS layout). The user's own layout and
trial order are recorded so that outputs can be written back the way the data came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from autolfads.rundir.layout import MATLAB_LAYOUT

if TYPE_CHECKING:
    from autolfads.data.segments import Segments

# Axis names a user can give in `data.layout`, e.g. "neurons_time_trials" (the tutorial's .mat).
AXES = ("trials", "time", "neurons")


@dataclass
class Dataset:
    train_data: np.ndarray  # (n_train, T, N) spike counts or a continuous signal, float32
    valid_data: np.ndarray  # (n_valid, T, N)
    train_inds: np.ndarray  # (n_train,) 0-based positions in the user's original trial order
    valid_inds: np.ndarray  # (n_valid,)
    train_truth: np.ndarray | None = None  # (n_train, T, N) true rates / means, data units
    valid_truth: np.ndarray | None = None
    train_ext_input: np.ndarray | None = None  # (n_train, T, E) optional external inputs
    valid_ext_input: np.ndarray | None = None
    conditions: np.ndarray | None = None  # (n_trials,) condition label per original trial
    # (n_trials,) int64, original order: 0-based bin of each trial's true input pulse (synthetic)
    true_input_times: np.ndarray | None = None
    # (n_trials, T_b, V) float32, original order: decode targets (behaviour), over the last T_b
    # bins of each trial (T_b <= T)
    behavior: np.ndarray | None = None
    bin_size_s: float | None = None  # bin width, when known (for plots in Hz)
    source: str = ""  # where the data came from, for messages and the report
    layout: str = MATLAB_LAYOUT  # the user's axis order, used when writing .mat outputs
    meta: dict = field(default_factory=dict)
    # Test trials: never trained on, never used for early stopping or PBT selection.
    test_inds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    test_data: np.ndarray | None = None  # (n_test, T, N); None when there is no test set
    test_truth: np.ndarray | None = None
    test_ext_input: np.ndarray | None = None
    # NLB-style evaluation: neurons the encoders never see (0-based) and final bins they never
    # see; the model still reconstructs them (co-bps, fp-bps).
    heldout_neurons: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    forward_bins: int = 0
    # A continuous recording cut into overlapping segments (its trials); None for trial data.
    segments: Segments | None = None

    @property
    def heldin_neurons(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.n_neurons), self.heldout_neurons)

    @property
    def n_observed_bins(self) -> int:
        return self.n_time - self.forward_bins

    @property
    def holds_out(self) -> bool:
        """Whether the encoders see less than the model reconstructs."""
        return len(self.heldout_neurons) > 0 or self.forward_bins > 0

    @property
    def n_trials(self) -> int:
        return len(self.train_inds) + len(self.valid_inds) + len(self.test_inds)

    @property
    def has_test(self) -> bool:
        return len(self.test_inds) > 0

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits with trials: train, valid and, when there is a test set, test."""
        return ("train", "valid", "test") if self.has_test else ("train", "valid")

    @property
    def n_time(self) -> int:
        return int(self.train_data.shape[1])

    @property
    def n_neurons(self) -> int:
        return int(self.train_data.shape[2])

    @property
    def ext_input_dim(self) -> int:
        return 0 if self.train_ext_input is None else int(self.train_ext_input.shape[2])

    @property
    def has_truth(self) -> bool:
        return self.train_truth is not None and self.valid_truth is not None

    def to_original_order(self, train: np.ndarray, valid: np.ndarray,
                          test: np.ndarray | None = None) -> np.ndarray:
        """Interleave per-split arrays (trials first) back into the user's original trial order
        (`test`: the test trials', required when there is a test set)."""
        if self.has_test and test is None:
            raise ValueError("the dataset has test trials: pass the test split's array too")
        parts = [train, valid] + ([test] if self.has_test else [])
        out = np.empty((self.n_trials, *train.shape[1:]), dtype=np.result_type(*parts))
        out[self.train_inds] = train
        out[self.valid_inds] = valid
        if self.has_test:
            out[self.test_inds] = test
        return out

    def split(self, name: str, kind: str = "data") -> np.ndarray | None:
        """One split's array: split("test", "truth") is test_truth."""
        return getattr(self, f"{name}_{kind}")

    def all_data(self) -> np.ndarray:
        return self.to_original_order(self.train_data, self.valid_data, self.test_data)

    def all_truth(self) -> np.ndarray | None:
        if not self.has_truth:
            return None
        return self.to_original_order(self.train_truth, self.valid_truth, self.test_truth)

    def as_recorded(self, y: np.ndarray, merge: bool = True) -> np.ndarray:
        """An array over all trials (original order) as the data was recorded, for scores over
        all of it: trial data unchanged; a continuous recording's segments back into one
        recording, 1 x time x dim, so that each bin counts once (merge: the cross-faded mean of
        model outputs; else joined exactly, for the data and its companions). With forward bins
        (unobserved at the end of every segment) the segments stay segments."""
        if self.segments is None or self.forward_bins:
            return y
        return self.segments.as_recording(y, merge)

    def summary(self) -> str:
        held = []
        if len(self.heldout_neurons):
            held.append(f"{len(self.heldout_neurons)} held-out neurons")
        if self.forward_bins:
            held.append(f"{self.forward_bins} forward bins")
        # Counts come from neurons; continuous signals (EMG, calcium) from channels.
        x = self.train_data
        noun = "neurons" if bool((x == np.round(x)).all()) else "channels"
        channels = f"{self.n_neurons} {noun}"
        if self.segments is None:
            size, unit = f"{self.n_trials} trials x {self.n_time} bins x {channels}", "trials"
        else:  # its segments are the trials
            size, unit = self.segments.describe(channels), "segments"
            held.append("segments set by data.segment_bins, data.segment_overlap")
        test = f" / {len(self.test_inds)} test" if self.has_test else f", no test {unit}"
        return (
            f"{size} ({len(self.train_inds)} train / {len(self.valid_inds)} valid{test})"
            + (f"; {', '.join(held)}" if held else "")
        )


def permutation(src_layout: str, dst_layout: str) -> tuple[int, int, int]:
    """Axis permutation taking an array laid out as `src_layout` to `dst_layout`."""
    src, dst = src_layout.split("_"), dst_layout.split("_")
    return tuple(src.index(a) for a in dst)  # type: ignore[return-value]
