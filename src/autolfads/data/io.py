"""Read spike data (.mat v5/v7.3, LFADS .h5, .npz, numpy arrays) into a `Dataset`.

Every reader funnels into `build_dataset` (build.py), so files and in-memory arrays get the same
checks (see `validate.py`) and the same train/valid split. The writers live in `writers.py`
(datasets) and `rundir/outputs.py` (a run's outputs) and are re-exported here, so
`autolfads.data.io` is the one import for data in and out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from autolfads.config import DataConfig
from autolfads.data.build import build_dataset
from autolfads.data.content import trials_look_like_neurons
from autolfads.data.dataset import Dataset
from autolfads.data.nlb_tensors import is_nlb, read_nlb
from autolfads.data.split import split_trials
from autolfads.data.validate import (
    as_numeric,
    check_3d,
    check_rates,
    check_scalar,
    check_values,
    parse_layout,
    resolve_inds,
)
from autolfads.data.variables import (
    KINDS,
    SUFFIX_KIND,
    file_kind,
    layout_text,
    read_mat,
    read_npz,
    unreadable,
)
from autolfads.data.writers import SCALE_FREE, write_lfads_h5, write_tutorial_mat
from autolfads.errors import UserInputError
from autolfads.rundir.layout import INTERNAL_LAYOUT, MATLAB_LAYOUT
from autolfads.rundir.outputs import write_outputs

__all__ = [
    "from_array",
    "load_dataset",
    "split_trials",
    "write_lfads_h5",
    "write_outputs",
    "write_tutorial_mat",
]

SUPPORTED = (".mat (MATLAB v5 or v7.3), .h5/.hdf5 (LFADS: train_data/valid_data; NLB: "
             "train_spikes_heldin), .npz (data), .nwb (units and trials tables)")
OPTIONAL_VARS = ("truth", "conditions", "train_inds", "valid_inds", "test_inds", "bin_size_ms",
                 "dt", "layout", "true_input_times", "behavior", SCALE_FREE)


# ----------------------------------------------------------------------------- reading


def load_dataset(path: str | Path, cfg: DataConfig | None = None) -> Dataset:
    """Read a data file (format from its extension) into a validated, split `Dataset`.

    .mat (v5 via scipy, v7.3 via h5py) and .npz: variable `cfg.variable` (default "data"),
    neurons x time x trials unless `cfg.layout` (or, for .npz only, a `layout` entry) says
    otherwise; optional truth, conditions, train_inds/valid_inds, bin_size_ms (ms) or dt (s),
    true_input_times (one bin per trial; 1-based in .mat, 0-based elsewhere).
    LFADS .h5: train_data/valid_data (trials x time x neurons) and the usual LFADS extras.
    A split stored in the file wins over `cfg.split`; `cfg.bin_size_ms` wins over the file's.
    A 2-D variable (or an NWB file without trials) is one continuous recording, neurons x time
    unless its layout says otherwise, cut into segments as from_array says.
    """
    cfg = cfg or DataConfig()
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"{p}: file not found")
    if not p.is_file():
        raise UserInputError(f"{p}: is not a file; give the path of a {SUPPORTED} file")
    suffix = p.suffix.lower()
    if suffix == ".nwb":
        from autolfads.data.nwb import read_nwb

        return read_nwb(p, cfg)
    # Read as what the file is: an HDF5 file written from Python but named .mat must not be
    # transposed as MATLAB's would be; a .mat renamed .h5 is still MATLAB's.
    named, kind = SUFFIX_KIND.get(suffix), file_kind(p)
    if (kind or named) is None:
        how = {".npy": "save it with np.savez(NAME.npz, data=array)",
               ".pkl": "pickles are never read (loading one runs code): save the array with "
                       "np.savez(NAME.npz, data=array)",
               ".csv": "a table: load it and save a numeric array (.mat or .npz)",
               }.get(suffix.replace(".pickle", ".pkl").replace(".txt", ".csv"))
        raise UserInputError(f"{p}: unsupported file type '{p.suffix}'; "
                             + (f"{how}; " if how else "") + f"supported: {SUPPORTED}")
    if kind == "hdf5" or kind is None and named == "hdf5":
        ds = _read_lfads_h5(p, cfg)
    elif (kind or named) == "mat":
        names, values = read_mat(p, cfg.variable, OPTIONAL_VARS)
        ds = _from_table(p, names, values, cfg, conditions_one_based=True)
    else:
        names, values = read_npz(p, cfg.variable, OPTIONAL_VARS)
        ds = _from_table(p, names, values, cfg, conditions_one_based=False)
    if kind is not None and named is not None and kind != named:
        ds.meta.setdefault("warnings", []).append(
            f"{p.name}: named {suffix} but is {KINDS[kind]}; read as one"
            + (" (arrays as stored: not transposed as MATLAB's are)" if kind == "hdf5" else ""))
    unused = [k for k in ("window_ms", "condition", "behavior") if getattr(cfg, k) is not None]
    unused += ["align"] if cfg.align != DataConfig().align else []
    if unused:  # NWB's settings: say so rather than ignore them silently
        them = "it" if len(unused) == 1 else "them"
        ds.meta.setdefault("warnings", []).append(
            f"data.{', data.'.join(unused)}: only NWB files use {them}; ignored for {p.name}")
    return ds


def from_array(
    data: np.ndarray,
    *,
    layout: str = INTERNAL_LAYOUT,
    truth: np.ndarray | None = None,
    conditions: np.ndarray | None = None,
    cfg: DataConfig | None = None,
    source: str = "array",
    train_inds: np.ndarray | None = None,
    valid_inds: np.ndarray | None = None,
    ext_input: np.ndarray | None = None,
    bin_size_s: float | None = None,
    true_input_times: np.ndarray | None = None,
    behavior: np.ndarray | None = None,
    test_inds: np.ndarray | None = None,
    layout_guessed: bool = False,
) -> Dataset:
    """A `Dataset` from in-memory arrays, with the same checks and split as `load_dataset`.

    `layout` names the axes of `data` (and `truth`); `cfg.layout` is not consulted here.
    `ext_input` is trials x time x inputs. Indices may be 0- or 1-based (detected).
    `true_input_times` (synthetic data) is one 0-based bin per trial, in the data's trial order.
    `behavior`: decode targets, trials x time x variables (possibly fewer, final, bins).
    A 2-D `data` is one continuous recording (layout without trials; time_neurons by default):
    it is cut into segments (data/segments.py), with `truth` in its layout and `behavior` /
    `ext_input` as time x variables over its bins; `layout_guessed`: the order was assumed.
    """
    return build_dataset(
        data, layout, label=source, noun="argument", cfg=cfg, truth=truth,
        conditions=conditions, train_inds=train_inds, valid_inds=valid_inds,
        test_inds=test_inds, ext_input=ext_input, bin_size_s=bin_size_s,
        true_input_times=true_input_times, behavior=behavior, layout_guessed=layout_guessed,
    )  # fmt: skip


def _bin_size_s(values: dict[str, object], label: str, noun: str) -> float | None:
    if "bin_size_ms" in values:
        return check_scalar(values["bin_size_ms"], f"{label}: {noun} 'bin_size_ms'") / 1000.0
    if "dt" in values:  # LFADS convention: dt is the bin width in seconds
        return check_scalar(values["dt"], f"{label}: {noun} 'dt'")
    return None


def _from_table(
    p: Path,
    names: list[str],
    values: dict[str, object],
    cfg: DataConfig,
    conditions_one_based: bool,
) -> Dataset:
    var = cfg.variable
    if var not in values:
        found = ", ".join(names) or "none"
        same = [n for n in names if n.lower() == var.lower()]  # MATLAB names are case-sensitive
        hint = f"; did you mean '{same[0]}' (--set data.variable={same[0]})?" if same else (
            "; name the variable that holds the data with --set data.variable=NAME "
            "(deconvolve: --variable NAME)")
        raise UserInputError(f"{p}: no variable '{var}' (found: {found}){hint}")
    layout = cfg.layout
    # A file may say its own layout (a `layout` entry); without one it is the tutorial's. .mat is
    # that layout by design, so only a Python-made file that does not say it is warned about.
    said = layout_text(values["layout"]) if "layout" in values else None
    guessed = layout == "auto" and said is None  # neither the file nor the user says it
    assumed = guessed and not conditions_one_based  # not MATLAB's: a Python-made file
    warnings = []
    if layout == "auto":
        layout = said or MATLAB_LAYOUT
    elif said and parse_layout(layout, str(p)) != parse_layout(said, f"{p}: variable 'layout'"):
        warnings.append(f"{p}: the file says its layout is {said}; read as {layout}, as "
                        "data.layout (--layout) says")
    cond = values.get("conditions")
    if conditions_one_based and cond is not None:
        cond = _from_matlab_labels(np.asarray(cond))
    times = values.get("true_input_times")
    if conditions_one_based and times is not None:  # MATLAB bin numbers are 1-based
        times = as_numeric(times, f"{p}: variable 'true_input_times'") - 1
    ds = build_dataset(
        values[var], layout, label=str(p), noun="variable", cfg=cfg, truth=values.get("truth"),
        conditions=cond, train_inds=values.get("train_inds"), valid_inds=values.get("valid_inds"),
        test_inds=values.get("test_inds"),
        bin_size_s=_bin_size_s(values, str(p), "variable"), data_name=var,
        true_input_times=times, behavior=values.get("behavior"), one_based=conditions_one_based,
        can_relayout=said is None or cfg.layout != "auto",  # the file's own word stands
        layout_guessed=guessed,
    )  # fmt: skip
    ds.meta.setdefault("warnings", []).extend(warnings)
    _truth_units(ds, values)
    # Trials-first arrays (Python's habit) land here; a recording's segments are not trials.
    if assumed and ds.segments is None and (
            ds.n_trials < ds.n_neurons or trials_look_like_neurons(ds.all_data())):
        ds.meta.setdefault("warnings", []).extend([
            f"{p}: read as {' x '.join(layout.split('_'))} (the tutorial's order): "
            f"{ds.n_trials} trials of {ds.n_neurons} neurons; if the first axis holds the "
            "trials, pass --layout trials_time_neurons"])
    return ds


def _from_matlab_labels(c: np.ndarray) -> np.ndarray:
    """Integer labels starting at 1 (MATLAB style, as `write_tutorial_mat` writes) -> 0-based."""
    if c.dtype.kind in "iuf" and c.size and np.all(c == np.round(c)) and c.min() == 1:
        return (c - 1).astype(np.int64)
    return c


def _read_lfads_h5(p: Path, cfg: DataConfig) -> Dataset:
    try:
        with h5py.File(p, "r") as f:
            names = sorted(f.keys())
            vals = {k: np.asarray(f[k][()]) for k in names if isinstance(f[k], h5py.Dataset)}
            var = f.get(cfg.variable)  # may be a path into a group: session/data
            nested: list[str] = []  # arrays inside groups, named in the error if none is found
            if "train_data" not in vals and not isinstance(var, h5py.Dataset):
                f.visititems(lambda k, o: nested.append(k)
                             if isinstance(o, h5py.Dataset) and "/" in k else None)
            if isinstance(var, h5py.Dataset) and cfg.variable not in vals:
                names.append(cfg.variable)
                vals[cfg.variable] = np.asarray(var[()])
            # bin size and layout may be attributes: of the data array, or of the file
            for key in ("bin_size_ms", "dt", "layout"):
                for attrs in (var.attrs if isinstance(var, h5py.Dataset) else {}, f.attrs):
                    if key in attrs and key not in vals:
                        vals[key] = np.asarray(attrs[key])
    except (OSError, RuntimeError) as e:
        raise unreadable(p, "an HDF5 file", e) from None
    label = str(p)
    if "train_data" not in vals and "valid_data" not in vals and cfg.variable in vals:
        # Not LFADS's layout: one array, read as a .npz is (its `layout` entry, or the tutorial's)
        return _from_table(p, names, vals, cfg, conditions_one_based=False)
    if cfg.layout not in ("auto", INTERNAL_LAYOUT):
        raise UserInputError(
            f"{p}: data.layout={cfg.layout} does not apply to LFADS .h5 files, which are always "
            "trials x time x neurons; remove the layout setting"
        )
    if is_nlb(names):
        return _from_nlb(label, vals, cfg)
    missing = [k for k in ("train_data", "valid_data") if k not in vals]
    if missing:
        raise UserInputError(
            f"{p}: no dataset '{missing[0]}' (found: {', '.join(names) or 'none'}); an LFADS .h5 "
            "needs train_data and valid_data (trials x time x neurons), an NLB tensor file "
            "train_spikes_heldin; a single array may be named with --set data.variable=NAME"
            + (f" (arrays in groups by their path: {', '.join(nested[:6])}"
               f"{' ...' if len(nested) > 6 else ''})" if nested else "")
        )
    # An optional third split, test_data (with test_inds / test_truth / ...), as our writer makes.
    splits = ("train", "valid", "test") if "test_data" in vals else ("train", "valid")
    x = {}
    for sp in splits:
        what = f"{label}: dataset '{sp}_data'"
        x[sp] = as_numeric(vals[f"{sp}_data"], what)
        check_3d(x[sp], what, INTERNAL_LAYOUT)
        check_values(x[sp], what)
        if x[sp].shape[1:] != x["train"].shape[1:]:
            raise UserInputError(
                f"{p}: train_data is {x['train'].shape} but {sp}_data is {x[sp].shape}; time and "
                "neuron axes (the last two) must match"
            )
    sizes = {sp: len(x[sp]) for sp in splits}
    n = sum(sizes.values())
    if any(f"{sp}_inds" in vals for sp in splits):
        got = resolve_inds(*(vals.get(f"{sp}_inds") for sp in ("train", "valid")), n, label,
                           vals.get("test_inds") if "test" in splits else None)
        inds = dict(zip(("train", "valid", "test"), got, strict=True))
        for sp in splits:
            if len(inds[sp]) != sizes[sp]:
                raise UserInputError(f"{p}: {sp}_inds has {len(inds[sp])} entries but {sp}_data "
                                     f"has {sizes[sp]} trials")
    else:  # no indices: train trials came first, then valid (then test), each in original order
        edges = np.cumsum([0, *sizes.values()])
        inds = {sp: np.arange(edges[i], edges[i + 1]) for i, sp in enumerate(splits)}

    def merge(stem: str, check: Callable[[np.ndarray, str], None] | None) -> np.ndarray | None:
        got = {sp: vals.get(f"{sp}_{stem}") for sp in splits}
        if all(a is None for a in got.values()):
            return None
        if any(a is None for a in got.values()):
            missing = next(f"{sp}_{stem}" for sp, a in got.items() if a is None)
            raise UserInputError(f"{p}: has {stem} for some splits but no {missing}; give it "
                                 "for every split")
        arrs = {sp: as_numeric(a, f"{label}: {sp}_{stem}") for sp, a in got.items()}
        for sp, a in arrs.items():
            if len(a) != sizes[sp] or a.shape[1:] != arrs["train"].shape[1:]:
                also = f" (train_{stem}: {arrs['train'].shape})" if sp != "train" else ""
                raise UserInputError(
                    f"{p}: {sp}_{stem} {a.shape} does not match {sp}_data {x[sp].shape}{also}")
            if check is not None:
                check(a, f"{label}: dataset '{sp}_{stem}'")
        out = np.empty((n, *arrs["train"].shape[1:]), dtype=np.float32)
        for sp in splits:
            out[inds[sp]] = arrs[sp]
        return out

    full = np.empty((n, *x["train"].shape[1:]), dtype=np.float32)
    for sp in splits:
        full[inds[sp]] = x[sp]
    return _truth_units(build_dataset(
        full, INTERNAL_LAYOUT, label=label, noun="dataset", cfg=cfg,
        truth=merge("truth", check_rates), conditions=vals.get("conditions"),
        train_inds=inds["train"], valid_inds=inds["valid"], test_inds=inds.get("test"),
        ext_input=merge("ext_input", None),
        bin_size_s=_bin_size_s(vals, label, "dataset"), data_name="train_data/valid_data",
        can_relayout=False, true_input_times=vals.get("true_input_times"),
        behavior=merge("decode", None), behavior_name="train_decode/valid_decode",
    ), vals)  # fmt: skip


def _truth_units(ds: Dataset, values: dict[str, object]) -> Dataset:
    """A file written from deconvolved data (`autolfads deconvolve`) says that its truth is in
    other units than its data (spike rates behind calcium events): only scale-free comparisons
    with it mean anything, as when the run deconvolves (data/deconvolve.py)."""
    flag = values.get(SCALE_FREE)
    if flag is not None and ds.has_truth and np.asarray(flag).size and np.asarray(flag).all():
        ds.meta[SCALE_FREE] = True
    return ds


def _from_nlb(label: str, vals: dict[str, np.ndarray], cfg: DataConfig) -> Dataset:
    """An NLB tensor file (nlb_tensors.py): the train trials split by data.split, the eval trials
    (when they can be scored) as the test trials."""
    t = read_nlb(label, vals, cfg)
    inds: dict[str, np.ndarray] = {}
    if t.n_eval:
        no_test = t.cfg.model_copy(update={"test_every": 0, "test_fraction": 0.0})
        tr, va, _ = split_trials(t.n_train, no_test)
        inds = {"train_inds": tr, "valid_inds": va,
                "test_inds": np.arange(t.n_train, t.n_train + t.n_eval)}
    ds = build_dataset(t.data, INTERNAL_LAYOUT, label=label, noun="dataset", cfg=t.cfg,
                bin_size_s=_bin_size_s(vals, label, "dataset"), data_name="train_spikes_heldin",
                can_relayout=False, behavior=t.behavior,
                behavior_name="train_behavior/eval_behavior", **inds)
    if t.n_eval:
        ds.meta["split"] = f"{t.cfg.split} over the train trials; NLB's eval trials are the test"
    ds.meta.setdefault("warnings", []).extend(t.warnings)
    return ds
