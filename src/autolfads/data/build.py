"""The one place data becomes a Dataset: every reader (data/io.py, data/nwb.py through
`from_array`) funnels here, so files and in-memory arrays get the same checks (validate.py), the
same handling of a continuous recording (segments.py) and the same train/valid/test split."""

from __future__ import annotations

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.content import content_warnings, truth_checks
from autolfads.data.dataset import Dataset, permutation
from autolfads.data.ragged import cut_companion, cut_nan_padding, stack_trials
from autolfads.data.segments import segment_recording
from autolfads.data.split import short_test_set, split_trials, unused_split_settings
from autolfads.data.validate import (
    MIN_BINS,
    MIN_TRIALS,
    as_numeric,
    check_3d,
    check_behavior,
    check_bins,
    check_conditions,
    check_ext_input,
    check_heldout,
    check_input_times,
    check_rates,
    check_trials,
    check_values,
    parse_layout,
    resolve_inds,
    resolve_test_inds,
)
from autolfads.errors import UserInputError
from autolfads.rundir.layout import INTERNAL_LAYOUT


def build_dataset(
    data: object,
    layout: str,
    *,
    label: str,
    noun: str,
    cfg: DataConfig | None,
    truth: object = None,
    conditions: object = None,
    train_inds: object = None,
    valid_inds: object = None,
    test_inds: object = None,
    ext_input: object = None,
    bin_size_s: float | None = None,
    data_name: str = "data",
    can_relayout: bool = True,
    true_input_times: object = None,
    behavior: object = None,
    behavior_name: str = "behavior",
    one_based: bool = False,
    layout_guessed: bool = False,
) -> Dataset:
    """The one place data becomes a Dataset. `one_based`: the source's convention for a
    test_inds list given alone (MATLAB's files: 1-based), used only where the list cannot tell.
    A 2-D `data` is one continuous recording (data/segments.py); `layout_guessed`: its axis
    order was assumed, not said (a reading that looks transposed is then said)."""
    cfg = cfg or DataConfig()

    def describe(name: str) -> str:
        return f"{label}: {noun} '{name}'"

    what = describe(data_name)
    layout = parse_layout(layout, what)
    # Trials of different lengths (kept one array each, or padded with NaN): cut to the
    # shortest, and the truth, decode targets and inputs beside them to the same bins.
    stacked = stack_trials(data, layout, what, MIN_BINS)
    a = as_numeric(data if stacked is None else stacked.array, what)
    a, padded = cut_nan_padding(a, layout, what, MIN_BINS)
    cut = stacked or padded
    if cut is not None:
        truth = cut_companion(truth, cut, layout, describe("truth"))
        behavior = cut_companion(behavior, cut, "", describe(behavior_name))
        ext_input = cut_companion(ext_input, cut, "", describe("ext_input"))
    seg, seg_inds, recorded_layout, notes = None, (), layout, [] if cut is None else cut.notes
    if a.ndim == 2 and a.size:  # one continuous recording: its segments are the trials
        per_trial = {"conditions": conditions, "train_inds": train_inds, "valid_inds": valid_inds,
                     "test_inds": test_inds, "true_input_times": true_input_times}
        for name, value in per_trial.items():
            if value is not None:
                raise UserInputError(f"{describe(name)}: names trials, but '{data_name}' is one "
                                     "continuous recording (2-D) without any; remove it")
        check_values(a, what)  # where a bad value is, in the recording's own terms
        truth = None if truth is None else _truth(truth, a.shape, describe("truth"))
        a, recorded_layout, seg, seg_inds, notes, cut = segment_recording(
            a, layout, split=cfg,
            describe=lambda name: describe(data_name if name == "data" else name),
            guessed=layout_guessed, min_bins=MIN_BINS, min_segments=MIN_TRIALS, truth=truth,
            companions={behavior_name: behavior, "ext_input": ext_input})
        truth, behavior, ext_input = (cut.get(k) for k in ("truth", behavior_name, "ext_input"))
        layout = INTERNAL_LAYOUT
    check_3d(a, what, layout)
    check_trials(a.shape, layout, what, can_relayout)
    check_bins(a.shape, layout, what)
    if seg is None:  # (a recording's values were checked before it was cut)
        check_values(a, what)
    perm = permutation(layout, INTERNAL_LAYOUT)
    x = np.ascontiguousarray(a.transpose(perm), dtype=np.float32)
    n = x.shape[0]

    true_rates = None
    if truth is not None:
        t = truth  # a recording's truth was checked (shape, values) before it was cut
        if seg is None:
            t = _truth(truth, a.shape, describe("truth"))
            check_rates(t, describe("truth"))
        true_rates = np.ascontiguousarray(t.transpose(perm), dtype=np.float32)
    cond = check_conditions(conditions, n, describe("conditions"))
    ext = check_ext_input(ext_input, x.shape, describe("ext_input"))
    input_times = check_input_times(true_input_times, x.shape, describe("true_input_times"))
    heldout, forward = check_heldout(cfg, x.shape[2], x.shape[1], label)
    warnings: list[str] = list(notes)
    if seg is None and (cfg.segment_bins is not None or cfg.segment_overlap is not None):
        warnings.append(f"{what}: data.segment_bins / data.segment_overlap cut a continuous "
                        "recording (2-D data); these data have trials, used as they are")
    # Decode targets end with the last observed bin: forward bins have no behaviour to decode.
    full = behavior is not None and np.shape(behavior)[:2] == (n, x.shape[1])
    if forward and full:  # recorded over the whole trial: its forward bins are dropped
        behavior = np.asarray(behavior)[:, : x.shape[1] - forward]
        warnings.append(f"{describe(behavior_name)}: covers all {x.shape[1]} bins; its last "
                        f"{forward} (the forward bins) are left out of decoding")
    beh = check_behavior(behavior, (n, x.shape[1] - forward), describe(behavior_name))

    unused = unused_split_settings(cfg) if train_inds is None and valid_inds is None else ""
    warnings += [f"{what}: {unused}"] if unused else []
    if seg is not None:
        tr, va, te = seg_inds
        split = (f"{cfg.split} over blocks of {seg.length} bins, each held-out block one segment "
                 "that shares no bin with a training segment")
    elif train_inds is None and valid_inds is None and test_inds is not None:
        te, note = resolve_test_inds(test_inds, n, label, one_based)
        warnings += [note] if note else []
        rest = np.setdiff1d(np.arange(n), te)
        no_test = cfg.model_copy(update={"test_every": 0, "test_fraction": 0.0})
        a, b, _ = split_trials(len(rest), no_test)
        tr, va = rest[a], rest[b]
        split = f"test_inds from the data; {cfg.split} over the other trials"
    elif train_inds is None and valid_inds is None:
        tr, va, te = split_trials(n, cfg)
        split = cfg.split
        short = short_test_set(n, cfg, len(te))
        warnings += [f"{what}: {short}"] if short else []
    else:
        tr, va, te = resolve_inds(train_inds, valid_inds, n, label, test_inds)
        split = "from the data (train_inds/valid_inds" + ("/test_inds)" if len(te) else ")")
    warnings += content_warnings(x, beh, {"valid": va, "test": te}, label,
                                 "trial" if seg is None else "segment")
    truth_notes, truth_flags = truth_checks(x, true_rates, label, describe("truth"))
    warnings += truth_notes
    if cfg.bin_size_ms is not None:  # an explicit setting beats what the file says
        bin_size_s = cfg.bin_size_ms / 1000.0
    if bin_size_s is not None and bin_size_s >= 1.0:  # the rates' units and the plots' axes
        warnings.append(f"{label}: bins of {bin_size_s:g} s: if that is milliseconds, give "
                        f"bin_size_ms (dt is in seconds) or --set data.bin_size_ms="
                        f"{bin_size_s:g}")

    def pick(arr: np.ndarray | None, inds: np.ndarray) -> np.ndarray | None:
        return None if arr is None else np.ascontiguousarray(arr[inds])

    def test(arr: np.ndarray | None) -> np.ndarray | None:
        return pick(arr, te) if len(te) else None

    return Dataset(
        train_data=pick(x, tr), valid_data=pick(x, va), train_inds=tr, valid_inds=va,
        train_truth=pick(true_rates, tr), valid_truth=pick(true_rates, va),
        train_ext_input=pick(ext, tr), valid_ext_input=pick(ext, va),
        conditions=cond, true_input_times=input_times, behavior=beh, bin_size_s=bin_size_s,
        source=label, layout=recorded_layout,
        meta={"split": split, "warnings": warnings, **truth_flags},
        segments=seg,
        test_inds=te, test_data=test(x), test_truth=test(true_rates), test_ext_input=test(ext),
        heldout_neurons=heldout, forward_bins=forward,
    )  # fmt: skip


def _truth(truth: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    t = as_numeric(truth, what)
    if t.shape != shape:
        raise UserInputError(f"{what}: shape {t.shape} does not match the data's {shape}; truth "
                             "must hold the true rates in the same layout as the data")
    return t
