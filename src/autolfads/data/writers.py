"""Write datasets: LFADS .h5 (trials first) and the tutorial's MATLAB .mat (neurons x time x
trials). The run's outputs are written by rundir/outputs.py, whose layout helpers these share.

Every write is atomic (temp file in the target's directory, then os.replace), so a crash never
leaves a half-written file, and a write that would land on the input data file is refused.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from autolfads.data.dataset import Dataset
from autolfads.errors import UserInputError
from autolfads.rundir.layout import MATLAB_LAYOUT
from autolfads.rundir.location import atomic_write
from autolfads.rundir.outputs import h5_put, matlab_axes, one_based_row, save_mat

RECORDING_LAYOUT = "neurons_time"  # a continuous recording as written: MATLAB's habit
# Written (as 1) when the truth is in other units than the data (deconvolved events against
# spike rates); the readers (data/io.py) keep it.
SCALE_FREE = "truth_scale_free"


def _scale_free(dataset: Dataset) -> dict[str, np.ndarray]:
    return {SCALE_FREE: np.array(1.0)} if dataset.meta.get(SCALE_FREE) else {}


def write_lfads_h5(path: str | Path, dataset: Dataset) -> Path:
    """The dataset as an LFADS .h5 (trials x time x neurons, 0-based inds); reads back the same.
    A continuous recording is written whole instead (`data`, neurons x time)."""
    if dataset.segments is not None:
        return _write_recording(path, dataset, "h5")

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            splits = dataset.splits
            counts = all(np.array_equal(a, np.round(a))
                         for a in (dataset.split(sp) for sp in splits))
            kind = np.int32 if counts else np.float32  # spike counts, or a continuous signal
            for sp in splits:
                h5_put(f, f"{sp}_data", dataset.split(sp).astype(kind))
                h5_put(f, f"{sp}_inds", getattr(dataset, f"{sp}_inds").astype(np.int64))
            for stem in ("truth", "ext_input"):
                for sp in splits:
                    arr = dataset.split(sp, stem)
                    if arr is not None:
                        h5_put(f, f"{sp}_{stem}", arr.astype(np.float32))
            if dataset.conditions is not None and dataset.conditions.dtype.kind in "iuf":
                h5_put(f, "conditions", dataset.conditions)
            if dataset.true_input_times is not None:  # original order, 0-based bins
                h5_put(f, "true_input_times", dataset.true_input_times.astype(np.int64))
            if dataset.behavior is not None:  # LFADS names: train_decode / valid_decode
                for sp in splits:
                    h5_put(f, f"{sp}_decode", dataset.behavior[getattr(dataset, f"{sp}_inds")])
            if dataset.bin_size_s is not None:
                f.create_dataset("bin_size_ms", data=dataset.bin_size_s * 1000.0)
            for key, flag in _scale_free(dataset).items():
                f.create_dataset(key, data=flag)

    return atomic_write(path, write, protect=dataset.source)


def write_tutorial_mat(path: str | Path, dataset: Dataset) -> Path:
    """The dataset as the tutorial's .mat: `data` neurons x time x trials, 1-based indices."""
    if dataset.segments is not None:
        return _write_recording(path, dataset, "mat")

    def write(tmp: Path) -> None:
        mdict: dict[str, object] = {
            "data": matlab_axes(dataset.all_data()).astype(np.float64),
            "layout": MATLAB_LAYOUT,  # said, so a reader need not be told the axis order
            "train_inds": one_based_row(dataset.train_inds),
            "valid_inds": one_based_row(dataset.valid_inds),
        }
        if dataset.has_test:
            mdict["test_inds"] = one_based_row(dataset.test_inds)
        truth = dataset.all_truth()
        if truth is not None:
            mdict["truth"] = matlab_axes(truth).astype(np.float64)
        cond = dataset.conditions
        if cond is not None:
            numeric = cond.dtype.kind in "iuf"
            mdict["conditions"] = one_based_row(cond) if numeric else cond
        if dataset.true_input_times is not None:  # MATLAB bin numbers are 1-based
            mdict["true_input_times"] = one_based_row(dataset.true_input_times)
        if dataset.behavior is not None:  # trials x time x variables, original order
            mdict["behavior"] = dataset.behavior.astype(np.float64)
        if dataset.bin_size_s is not None:
            mdict["bin_size_ms"] = dataset.bin_size_s * 1000.0
        save_mat(tmp, {**mdict, **_scale_free(dataset)})

    return atomic_write(path, write, protect=dataset.source)


def _write_recording(path: str | Path, dataset: Dataset, fmt: str) -> Path:
    """A continuous recording as it came, one array: `data` neurons x time (its segments joined
    back, exactly), with `layout` said (a .mat variable, an HDF5 attribute); truth the same way,
    behavior time x variables. No trial indices: a recording has none (it is cut again when
    read, with the reader's data.segment_bins)."""
    seg = dataset.segments
    assert seg is not None
    arrays = {"data": seg.join(dataset.all_data()).T}
    truth = dataset.all_truth()
    if truth is not None:
        arrays["truth"] = seg.join(truth).T
        arrays.update(_scale_free(dataset))
    if dataset.behavior is not None and dataset.behavior.shape[1] == seg.length:
        arrays["behavior"] = seg.join(dataset.behavior)  # (without forward bins: not all there)
    bin_ms = None if dataset.bin_size_s is None else dataset.bin_size_s * 1000.0

    def write(tmp: Path) -> None:
        if fmt == "mat":
            save_mat(tmp, {**{k: a.astype(np.float64) for k, a in arrays.items()},
                           "layout": RECORDING_LAYOUT,
                           **({"bin_size_ms": bin_ms} if bin_ms is not None else {})})
            return
        with h5py.File(tmp, "w") as f:
            for key, arr in arrays.items():
                h5_put(f, key, arr.astype(np.float32))
            f.attrs["layout"] = RECORDING_LAYOUT
            if bin_ms is not None:
                f.attrs["bin_size_ms"] = bin_ms

    return atomic_write(path, write, protect=dataset.source)


def dataset_format(path: str | Path, fmt: str | None = None) -> str:
    """"h5" or "mat": `fmt`, or the one the extension names; the extension must match, since
    the readers pick the format from it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if fmt is None:
        if suffix not in (".mat", ".h5", ".hdf5"):
            raise UserInputError(f"{path}: name the file *.h5 (LFADS layout) or *.mat (the "
                                 "tutorial's layout); those are the formats written")
        return "mat" if suffix == ".mat" else "h5"
    if fmt not in ("h5", "mat"):
        raise UserInputError(f"--format {fmt}: unknown format; use h5 or mat")
    wanted = (".mat",) if fmt == "mat" else (".h5", ".hdf5")
    if suffix not in wanted:
        raise UserInputError(
            f"{path}: extension does not match --format {fmt}; name the file *{wanted[0]}"
        )
    return fmt


def write_dataset(path: str | Path, ds: Dataset, fmt: str | None = None) -> Path:
    """Write `ds` as LFADS .h5 or tutorial .mat (dataset_format)."""
    fmt = dataset_format(path, fmt)
    return write_lfads_h5(path, ds) if fmt == "h5" else write_tutorial_mat(path, ds)
