"""A continuous recording (no trials: spontaneous activity, a behaving session, an imaging
session) as LFADS trials: cut into segments of equal length that overlap their neighbours, and
the segments' outputs merged back into one recording.

Why overlap: LFADS infers each segment's initial condition from that segment alone, so its first
bins (and, less so, its last) are the least constrained. Where two segments overlap, the merge
cross-fades from one to the other: segment A's weight falls linearly over the overlap while B's
rises, the two summing to 1, so every bin of the merged output is a weighted mean of the segments
that cover it, each trusted least at its own edges (bins covered by one segment only keep its
value).

The last segment ends at the recording's last bin: it may overlap its neighbour by more than the
others do, so that no bin is left out and every segment has the same length.

Why held-out segments overlap nothing (split_plan): a validation segment that shared bins with a
training segment would be scored partly on data the model trained on, flattering the scores
that early stopping, PBT selection and the test metrics rest on. So held-out segments abut their
neighbours; their edges are seams in the merged output (a few bins each, where a segment's
first bins are the least constrained), the price of honest scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.split import short_test_set, split_trials
from autolfads.data.validate import check_values
from autolfads.errors import UserInputError

DEFAULT_BINS = 100  # a segment, when data.segment_bins is not given
DEFAULT_OVERLAP_FRACTION = 0.2  # of a segment, when data.segment_overlap is not given


@dataclass(frozen=True, eq=False)  # (an array field: no value equality)
class Segments:
    starts: np.ndarray  # (n_segments,) int64, 0-based first bin of each segment
    length: int  # bins per segment
    overlap: int  # bins shared by neighbouring training segments (a run's last pair may share
    # more; held-out segments share none)
    n_bins: int  # the recording's length

    def describe(self, channels: str) -> str:
        return (f"one recording of {self.n_bins} bins x {channels}, cut into {len(self.starts)} "
                f"segments of {self.length} bins (training segments overlapping by "
                f"{self.overlap})")

    def cut(self, x: np.ndarray) -> np.ndarray:
        """time x ... -> segments x length x ... (copies)."""
        idx = self.starts[:, None] + np.arange(self.length)[None, :]
        return np.ascontiguousarray(np.asarray(x)[idx])

    def weights(self) -> np.ndarray:
        """(n_segments, length) cross-fade weights: over each overlap with the next segment,
        linear ramps that sum to 1 (where three segments meet, merge divides by their sum)."""
        n, length = len(self.starts), self.length
        w = np.ones((n, length))
        ends = self.starts + length
        for i in range(n - 1):  # each overlap with the next segment, whatever its width
            shared = int(ends[i] - self.starts[i + 1])
            if shared > 0:
                ramp = np.arange(1, shared + 1) / (shared + 1)  # rises over the shared bins
                w[i + 1, :shared] *= ramp
                w[i, length - shared:] *= ramp[::-1]
        return w

    def merge(self, y: np.ndarray) -> np.ndarray:
        """segments x length x ... -> time x ... (float32): over each bin, the cross-faded mean
        of the segments that cover it (the model's outputs, which differ between segments)."""
        y = self._checked(y)
        w = self.weights().reshape(y.shape[:2] + (1,) * (y.ndim - 2))
        out = np.zeros((self.n_bins, *y.shape[2:]))  # float64 sums, a segment at a time
        total = np.zeros((self.n_bins,) + (1,) * (y.ndim - 2))
        for i, s in enumerate(self.starts):
            out[s : s + self.length] += w[i] * y[i]
            total[s : s + self.length] += w[i]
        return (out / total).astype(np.float32)

    def join(self, y: np.ndarray) -> np.ndarray:
        """segments x length x ... -> time x ..., each bin from the last segment that covers it:
        the recording back exactly, for arrays whose overlapping bins agree (the data)."""
        y = self._checked(y)
        out = np.empty((self.n_bins, *y.shape[2:]), dtype=y.dtype)
        for i, s in enumerate(self.starts):
            out[s : s + self.length] = y[i]
        return out

    def as_recording(self, y: np.ndarray, merge: bool = True) -> np.ndarray:
        """segments x length x ... -> 1 x time x ...: one trial that is the whole recording
        (merge: model outputs, cross-faded; else joined exactly: the data)."""
        return (self.merge(y) if merge else self.join(y))[None]

    def covered(self, segments: np.ndarray) -> np.ndarray:
        """(n_bins,) bool: the bins that these segments (indices) cover."""
        mask = np.zeros(self.n_bins, dtype=bool)
        for s in self.starts[np.asarray(segments, dtype=np.int64)]:
            mask[s : s + self.length] = True
        return mask

    def stretch(self, k: int, held_out: dict[int, str]) -> Stretch:
        """About three segments of the recording around segment k, to show how the merged
        output runs across the seams where held-out segments (index -> split name) meet
        training ones."""
        width = min(3 * self.length, self.n_bins)
        first = int(np.clip(self.starts[k] - self.length, 0, self.n_bins - width))
        end = first + width
        marks = []
        for i in sorted(held_out, key=lambda i: self.starts[i]):
            s = int(self.starts[i])
            if s < end and s + self.length > first:
                marks.append((max(s, first) - first, min(s + self.length, end) - first,
                              held_out[i]))
        return Stretch(first, end, tuple(marks))

    def _checked(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        if y.shape[:2] != (len(self.starts), self.length):
            raise ValueError(f"{y.shape[:2]} segments x bins, expected "
                             f"{(len(self.starts), self.length)}")
        return y


@dataclass(frozen=True)
class Stretch:
    """Bins first..end-1 (0-based) of a recording, shown as one column of a figure, and the
    held-out segments in it: (first, end, split name) in the stretch's own bins."""

    first: int
    end: int
    held_out: tuple[tuple[int, int, str], ...]

    def of(self, recording: np.ndarray) -> np.ndarray:
        """This stretch of a time-first array."""
        return recording[self.first : self.end]


def plan(n_bins: int, length: int | None, overlap: int | None, what: str,
         min_bins: int) -> Segments:
    """Where the segments of a recording of `n_bins` bins start (settings None: the defaults)."""
    if length is None:
        length = min(DEFAULT_BINS, n_bins)
    if overlap is None:
        overlap = int(round(DEFAULT_OVERLAP_FRACTION * length))
    if length < min_bins:
        raise UserInputError(f"{what}: data.segment_bins={length}: a segment needs at least "
                             f"{min_bins} bins for LFADS to infer dynamics")
    if length > n_bins:
        raise UserInputError(f"{what}: data.segment_bins={length} is longer than the recording "
                             f"({n_bins} bins); use at most {n_bins}")
    if not 0 <= overlap < length:
        raise UserInputError(f"{what}: data.segment_overlap={overlap} must be at least 0 and less "
                             f"than a segment ({length} bins)")
    starts = list(range(0, n_bins - length + 1, length - overlap))
    if starts[-1] + length < n_bins:  # the last segment ends with the recording
        starts.append(n_bins - length)
    return Segments(np.asarray(starts, dtype=np.int64), int(length), int(overlap), int(n_bins))


def split_plan(base: Segments, cfg: DataConfig
               ) -> tuple[Segments, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Segments whose validation and test segments share no bin with a training segment, so
    that their scores are honest, and (train, valid, test) segment indices.

    The recording is tiled into blocks of one segment's length, and data.split chooses the
    held-out blocks as it chooses trials (every_nth: every valid_every-th block ...). Each
    held-out block is one segment of its own; each run of training blocks (the last one with the
    recording's remainder, so the last block always trains) is cut with `base`'s overlap.
    Overlaps, and with them the merge's cross-fades, are then only between training segments."""
    length, n_blocks = base.length, base.n_bins // base.length
    _, va, te = split_trials(n_blocks, cfg, min_kept=0)  # the caller counts the segments
    role = np.zeros(n_blocks, dtype=np.int64)  # 0 train, 1 valid, 2 test
    role[va], role[te] = 1, 2
    if role[-1] and base.n_bins % length:  # a remainder joins the last block: it must train
        last_train = int(np.flatnonzero(role == 0)[-1])
        role[last_train], role[-1] = role[-1], 0
    starts, roles, b = [], [], 0
    while b < n_blocks:
        if role[b]:
            starts.append(b * length)
            roles.append(int(role[b]))
            b += 1
            continue
        e = b + int(np.argmax(np.append(role[b:], 1) != 0))  # the end of this training run
        stop = base.n_bins if e == n_blocks else e * length
        run = plan(stop - b * length, length, base.overlap, "", length)
        starts += [b * length + int(s) for s in run.starts]
        roles += [0] * len(run.starts)
        b = e
    seg = Segments(np.asarray(starts, dtype=np.int64), length, base.overlap, base.n_bins)
    kind = np.asarray(roles)
    return seg, (np.flatnonzero(kind == 0), np.flatnonzero(kind == 1), np.flatnonzero(kind == 2))


# ----------------------------------------------------------------------------- as trials


def time_first(arr: object, n_bins: int, what: str) -> np.ndarray:
    """A companion of a recording (decode targets, external inputs): time x dim, or dim x time
    (MATLAB's habit), or one series of n_bins values; UserInputError otherwise."""
    a = np.asarray(arr)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim == 2 and a.shape[0] != n_bins and a.shape[1] == n_bins:
        a = a.T
    if a.ndim != 2 or a.shape[0] != n_bins:
        raise UserInputError(f"{what}: shape {a.shape}; with a continuous recording it must be "
                             f"time x variables over the recording's {n_bins} bins")
    return a


def segment_recording(a: np.ndarray, layout: str, *, split: DataConfig,
                      describe: Callable[[str], str], guessed: bool, min_bins: int,
                      min_segments: int, truth: np.ndarray | None,
                      companions: dict[str, object]
                      ) -> tuple[np.ndarray, str, Segments, tuple[np.ndarray, ...], list[str],
                                 dict[str, np.ndarray]]:
    """A 2-D recording `a` (axis order: `layout` without trials) as segments x bins x channels
    (split.segment_bins, split.segment_overlap; held out by split_plan), with its `truth` (same
    layout) and companions (behavior, ext_input: name -> array or None) cut the same way.
    Returns (segments, the recording's axis order, the plan, (train, valid, test) segment
    indices, notes, the cut companions and truth by name); describe(name) begins a message
    about `name` ('data': `a`).
    `guessed`: the axis order was assumed, not said, so a reading that looks transposed is said.
    """
    order = "_".join(ax for ax in layout.split("_") if ax != "trials")
    other = "time_neurons" if order == "neurons_time" else "neurons_time"
    x = a if order == "time_neurons" else a.T
    n_bins, n_channels = x.shape
    length, overlap = split.segment_bins, split.segment_overlap
    seg = plan(n_bins, length, overlap, describe("data"), min_bins)  # errors name the settings
    made = _split(seg, split, min_segments)
    if made is None:
        swapped_fits = _enough(n_channels, length, overlap, split, min_segments, min_bins)
        swap = ""
        if swapped_fits or n_channels > n_bins:  # the other axis may be time: say so first
            shorter = "" if swapped_fits else " with shorter segments (data.segment_bins)"
            swap = (f"if its other axis ({n_channels} long) is time, give --layout {other} "
                    f"(data.layout){shorter}; otherwise ")
        raise UserInputError(f"{describe('data')}: "
                             f"{_too_short(seg, split, min_segments, min_bins, swap)}")
    seg, inds = made
    short = short_test_set(n_bins // seg.length, split, len(inds[2]),
                           f"blocks of {seg.length} bins")
    notes = [f"{describe('data')}: {short}"] if short else []
    if guessed and n_channels > n_bins:
        notes.append(f"{describe('data')}: read as {' x '.join(order.split('_'))} (its layout "
                     f"was not said): {n_bins} bins of {n_channels} channels, more channels than "
                     f"bins; if the first axis is time, give --layout {other} (data.layout)")
    # Bad values are placed in the user's own arrays (after cutting they would be placed by
    # segment and bin within it, which the user never made).
    for name, c in (*companions.items(), ("truth", truth)):
        if c is not None and np.asarray(c).dtype.kind == "f":
            check_values(np.asarray(c), describe(name))
    cut = {name: seg.cut(time_first(c, n_bins, describe(name)))
           for name, c in companions.items() if c is not None}
    if truth is not None:  # float32, as the Dataset keeps them: no float64 copy of each segment
        cut["truth"] = seg.cut((truth if order == "time_neurons" else truth.T).astype(np.float32))
    return seg.cut(x.astype(np.float32)), order, seg, inds, notes, cut


def _split(base: Segments, split: DataConfig, needed: int
           ) -> tuple[Segments, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """split_plan, when it leaves at least `needed` segments to train and validate on and at
    least one to validate; None otherwise (the recording is too short for these settings)."""
    try:
        seg, (tr, va, te) = split_plan(base, split)
    except UserInputError:  # e.g. valid_every larger than the blocks
        return None
    return (seg, (tr, va, te)) if len(va) and len(tr) + len(va) >= needed else None


def _enough(n_bins: int, length: int | None, overlap: int | None, split: DataConfig,
            needed: int, min_bins: int) -> bool:
    """Whether these settings make enough segments of `n_bins` bins."""
    try:
        return _split(plan(n_bins, length, overlap, "", min_bins), split, needed) is not None
    except UserInputError:  # they do not fit at all
        return False


def _too_short(seg: Segments, split: DataConfig, needed: int, min_bins: int, swap: str) -> str:
    """Why a recording gives too few segments, and what would do: `swap` (another axis order),
    then the longest segments that would (with the overlap given, or the same fraction)."""
    given = split.segment_overlap

    def overlap_for(n: int) -> int:
        return given if given is not None else int(round(seg.overlap / seg.length * n))

    fits = next((n for n in range(seg.length - 1, max(min_bins, (given or 0) + 1) - 1, -1)
                 if _enough(seg.n_bins, n, overlap_for(n), split, needed, min_bins)), None)
    fix = (f"give shorter segments (--set data.segment_bins={fits}) or a longer recording"
           if fits is not None else "record longer")
    blocks = seg.n_bins // seg.length
    try:
        made, (tr, va, _) = split_plan(seg, split)
        n, kept, valid = len(made.starts), len(tr) + len(va), len(va)
    except UserInputError:  # valid_every beyond the blocks
        n, kept, valid = len(seg.starts), len(seg.starts), 0
    if valid or n < needed:  # too few segments whatever validates
        tested = f" ({n - kept} of them test segments)" if n > kept else ""
        why = f"{tested}; LFADS needs at least {needed} to train and validate"
    else:  # every_nth with valid_every beyond the recording's blocks of one segment
        why = (f", none to validate: data.valid_every={split.valid_every} is more than its "
               f"{blocks} blocks of one segment")
        fix = f"use a smaller data.valid_every, {swap}{fix}"
        swap = ""
    return (f"2-D, read as one continuous recording of {seg.n_bins} bins, which makes "
            f"{n} segment{'s' if n > 1 else ''} of {seg.length} bins{why}: {swap}{fix} "
            "(trials: a 3-D array, neurons x time x trials in a file, trials x time x neurons "
            "from Python)")
