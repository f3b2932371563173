"""The run's outputs (DESIGN.md §3) in memory and in files, with the MATLAB layout and the HDF5
compression rule written once for every writer (the run's own outputs, `autolfads export`, and
the dataset writers in data/writers.py).

  output/lfads_output.h5   trials x time x dim: per split (train_/valid_/test_) and for all
                           trials in the original order, 0-based train_inds/valid_inds/
                           test_inds, truth/conditions/
                           true_input_times (0-based bins) when known; attributes layout,
                           input_layout, source, bin_size_ms
  output/lfads_output.mat  MATLAB: dim x time x trials (ic_mean dim x trials), original order,
                           1-based index rows; `layout` records the input's axis order
A continuous recording (data/segments.py) adds rates_/factors_/inferred_inputs_continuous
(time x dim in .h5, dim x time in .mat: the segments merged) and segment_starts (first bins).
Data read from an NWB file that left some of its trials or units out adds source_trials /
source_units (the file's rows of those kept, 0-based in .h5, 1-based in .mat), and a session
read as one recording the attribute recording_start_s (its first bin's start, session time).

Every write is atomic (location.atomic_write); the run's outputs never replace the input data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.location import Location, atomic_write

if TYPE_CHECKING:
    import h5py

    from autolfads.data.dataset import Dataset

POST_KINDS = ("rates", "factors", "inferred_inputs", "ic_mean")  # the posterior's outputs
TIME_ARRAYS = ("rates", "factors", "inferred_inputs", "truth")  # trials x time x dim
# A continuous recording's outputs merged over its segments: KIND_continuous, time x dim (and
# truth_continuous, the true rates joined back, when the data has them).
CONTINUOUS_KINDS = ("rates", "factors", "inferred_inputs")
WHOLE_RECORDING = tuple(f"{k}_continuous" for k in (*CONTINUOUS_KINDS, "truth"))
SEGMENT_ATTRS = ("segment_bins", "segment_overlap", "recording_bins")
SOURCE_ROWS = ("source_trials", "source_units")


# ---------------------------------------------------------------------- the MATLAB layout


def matlab_axes(arr: np.ndarray) -> np.ndarray:
    """trials x time x dim <-> dim x time x trials; trials x dim <-> dim x trials (either way:
    the conversion is its own inverse)."""
    arr = np.asarray(arr)
    return arr.T if arr.ndim == 2 else arr.transpose(2, 1, 0)


def one_based_row(inds: np.ndarray) -> np.ndarray:
    """0-based trial indices as MATLAB's 1-based row vector."""
    return (np.asarray(inds, dtype=np.float64) + 1.0).reshape(1, -1)


def save_mat(path: Path, mdict: dict[str, object]) -> None:
    import scipy.io

    scipy.io.savemat(path, mdict, appendmat=False, do_compression=True, oned_as="row")


def h5_put(f: h5py.File, name: str, arr: np.ndarray) -> None:
    """One compressed HDF5 dataset."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "U":  # text labels (conditions): HDF5 stores UTF-8 strings
        import h5py

        arr = arr.astype(object).astype(h5py.string_dtype())
    # gzip needs chunking, which HDF5 refuses for zero-sized axes (e.g. co_dim = 0).
    opts = {"compression": "gzip", "compression_opts": 4} if arr.ndim and arr.size else {}
    f.create_dataset(name, data=arr, **opts)


# ---------------------------------------------------------------------- in memory


@dataclass
class Outputs:
    """output/lfads_output.h5 in memory: arrays trials first, original trial order, 0-based."""

    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
    origin: str  # which file they came from, for messages

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    @property
    def bin_size_ms(self) -> float | None:
        v = self.attrs.get("bin_size_ms")
        return float(v) if v is not None and np.isfinite(v) and v > 0 else None


def outputs_of(dataset: Dataset, post: dict[str, np.ndarray]) -> Outputs:
    """A trained model's outputs: `post` (per split, as sampled) and each kind for all trials in
    the original order; checks the split shapes."""
    arrays: dict[str, np.ndarray] = {}
    for kind in POST_KINDS:
        per = {sp: np.asarray(post[f"{sp}_{kind}"]) for sp in dataset.splits}
        for sp, arr in per.items():
            n = len(getattr(dataset, f"{sp}_inds"))
            if len(arr) != n:
                raise ValueError(f"{sp}_{kind} has {len(arr)} trials, the dataset's {sp} split {n}")
            if arr.shape[1:] != per["train"].shape[1:]:
                raise ValueError(f"train_{kind} {per['train'].shape} and {sp}_{kind} {arr.shape} "
                                 "differ")
            arrays[f"{sp}_{kind}"] = arr.astype(np.float32)
        arrays[kind] = dataset.to_original_order(*(arrays[f"{sp}_{kind}"]
                                                   for sp in dataset.splits))
    if arrays["rates"].shape[1:] != (dataset.n_time, dataset.n_neurons):
        raise ValueError(f"rates {arrays['rates'].shape} do not match the data's time x neurons")
    for sp in dataset.splits:
        arrays[f"{sp}_inds"] = getattr(dataset, f"{sp}_inds").astype(np.int64)
    truth = dataset.all_truth()
    if truth is not None:
        arrays["truth"] = truth
    if dataset.conditions is not None:  # numbers, or text labels
        c = dataset.conditions
        arrays["conditions"] = c if c.dtype.kind in "iuf" else c.astype(str)
    if dataset.true_input_times is not None:
        arrays["true_input_times"] = dataset.true_input_times.astype(np.int64)
    for key in SOURCE_ROWS:  # which of the file's trials / units these are (data/nwb.py)
        if key in dataset.meta:
            arrays[key] = np.asarray(dataset.meta[key], dtype=np.int64)
    attrs: dict[str, Any] = {"layout": layout.INTERNAL_LAYOUT, "input_layout": dataset.layout,
                             "source": dataset.source}
    if "recording_start_s" in dataset.meta:
        attrs["recording_start_s"] = float(dataset.meta["recording_start_s"])
    seg = dataset.segments
    if seg is not None:  # a continuous recording: its segments merged back into one
        for kind in CONTINUOUS_KINDS:
            arrays[f"{kind}_continuous"] = seg.merge(arrays[kind])
        if "truth" in arrays:  # the same in every segment that covers a bin
            arrays["truth_continuous"] = seg.join(arrays["truth"])
        arrays["segment_starts"] = seg.starts.astype(np.int64)
        # forward_bins: with them a recording is scored per segment (Dataset.as_recorded),
        # which the report must know without the data.
        attrs.update(segment_bins=seg.length, segment_overlap=seg.overlap,
                     recording_bins=seg.n_bins, forward_bins=dataset.forward_bins)
    if dataset.bin_size_s is not None:
        attrs["bin_size_ms"] = dataset.bin_size_s * 1000.0
    return Outputs(arrays, attrs, "")


def matlab_dict(outputs: Outputs, conditions: bool = True) -> dict[str, object]:
    """The .mat variables: dim x time x trials, original order, 1-based indices (and
    conditions, 1-based, unless `conditions` is False: the run's own .mat has none)."""
    a = outputs.arrays
    mdict: dict[str, object] = {}
    for key in TIME_ARRAYS:
        if key in a and np.asarray(a[key]).ndim == 3:
            mdict[key] = matlab_axes(a[key])
    if "ic_mean" in a and np.asarray(a["ic_mean"]).ndim == 2:
        mdict["ic_mean"] = matlab_axes(a["ic_mean"])
    for key in WHOLE_RECORDING:  # dim x time, as MATLAB's other arrays are dim first
        if key in a:
            mdict[key] = np.asarray(a[key]).T
    for key in ("train_inds", "valid_inds", "test_inds", "segment_starts", *SOURCE_ROWS):
        if key in a:
            mdict[key] = one_based_row(a[key])
    if "recording_start_s" in outputs.attrs:
        mdict["recording_start_s"] = float(outputs.attrs["recording_start_s"])
    cond = a.get("conditions")
    if conditions and cond is not None:  # numbers 1-based; text labels as a cell array
        cond = np.asarray(cond)
        mdict["conditions"] = (one_based_row(cond) if cond.dtype.kind in "iuf"
                               else np.array(list(cond.astype(str)), dtype=object))
    if "true_input_times" in a:  # MATLAB bin numbers are 1-based
        mdict["true_input_times"] = one_based_row(a["true_input_times"])
    if outputs.bin_size_ms:
        mdict["bin_size_ms"] = outputs.bin_size_ms
    mdict.update({k: float(outputs.attrs[k]) for k in SEGMENT_ATTRS if k in outputs.attrs})
    input_layout = outputs.attrs.get("input_layout")
    # (A recording's 2-axis order is not recorded: every array here is dim first whatever it was.)
    if isinstance(input_layout, str) and input_layout.count("_") == 2 \
            and input_layout != layout.MATLAB_LAYOUT:
        # Arrays here are always neurons x time x trials; this records the input's layout.
        mdict["layout"] = input_layout
    return mdict


# ---------------------------------------------------------------------- writers


def write_mat(tmp: Path, outputs: Outputs, conditions: bool = True) -> None:
    save_mat(tmp, matlab_dict(outputs, conditions))


def write_h5(tmp: Path, outputs: Outputs) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        for key, arr in outputs.arrays.items():
            h5_put(f, key, arr)
        for key, value in outputs.attrs.items():
            f.attrs[key] = value


def write_npz(tmp: Path, outputs: Outputs) -> None:
    extra: dict[str, np.ndarray] = {"layout": np.array(layout.INTERNAL_LAYOUT)}
    if outputs.bin_size_ms:
        extra["bin_size_ms"] = np.array(outputs.bin_size_ms)
    extra.update({k: np.array(outputs.attrs[k]) for k in (*SEGMENT_ATTRS, "recording_start_s")
                  if k in outputs.attrs})
    with tmp.open("wb") as f:  # a file object: np.savez would append .npz to a bare name
        np.savez_compressed(f, **{**outputs.arrays, **extra})


WRITERS = {"mat": write_mat, "h5": write_h5, "npz": write_npz}


def write_outputs(
    out_dir: str | Path, dataset: Dataset, post: dict[str, np.ndarray]
) -> dict[str, Path]:
    """Write DIR/output/lfads_output.h5 (trials first) and .mat (MATLAB layout), see DESIGN §3."""
    outputs = outputs_of(dataset, post)
    return {
        "h5": atomic_write(Path(out_dir, layout.OUTPUT_H5),
                           lambda tmp: write_h5(tmp, outputs), protect=dataset.source),
        "mat": atomic_write(Path(out_dir, layout.OUTPUT_MAT),
                            lambda tmp: write_mat(tmp, outputs, conditions=False),
                            protect=dataset.source),
    }


# ---------------------------------------------------------------------- reader


def read_outputs(loc: Location) -> Outputs | None:
    """The run's outputs from the .h5 or, when only the .mat is left, from the .mat (converted
    back to trials first and 0-based indices); None when neither exists yet (a live run)."""
    if loc.exists(layout.OUTPUT_H5):
        import h5py

        origin = f"{loc.location}/{layout.OUTPUT_H5}"
        data = loc.read_bytes(layout.OUTPUT_H5)  # h5py needs seekable access; outputs are small
        try:
            with h5py.File(io.BytesIO(data), "r") as f:
                arrays = {k: _text_as_str(np.asarray(f[k][()]))
                          for k in f if isinstance(f[k], h5py.Dataset)}
                attrs = {k: _plain(v) for k, v in f.attrs.items()}
        except OSError as e:
            raise UserInputError(f"{origin}: not a readable HDF5 file ({e})") from None
        return Outputs(arrays, attrs, origin)
    if loc.exists(layout.OUTPUT_MAT):
        return _outputs_from_mat(loc)
    return None


def _text_as_str(a: np.ndarray) -> np.ndarray:
    """HDF5 strings come back as bytes; labels are text."""
    if a.dtype.kind in "OS" and a.size and isinstance(a.flat[0], bytes):
        return np.array([v.decode() for v in a.ravel()]).reshape(a.shape)
    return a


def _outputs_from_mat(loc: Location) -> Outputs:
    import scipy.io

    origin = f"{loc.location}/{layout.OUTPUT_MAT}"
    try:
        mat = scipy.io.loadmat(io.BytesIO(loc.read_bytes(layout.OUTPUT_MAT)))
    except (ValueError, OSError, NotImplementedError) as e:
        raise UserInputError(f"{origin}: not a readable .mat file ({e})") from None
    arrays: dict[str, np.ndarray] = {}
    for key in (*TIME_ARRAYS, "ic_mean"):
        if key in mat:
            arrays[key] = np.ascontiguousarray(matlab_axes(mat[key]))
    for key in WHOLE_RECORDING:
        if key in mat:
            arrays[key] = np.ascontiguousarray(mat[key].T)
    for key in ("train_inds", "valid_inds", "test_inds", "true_input_times", "segment_starts",
                *SOURCE_ROWS):
        if key in mat:  # MATLAB indices are 1-based
            arrays[key] = np.asarray(mat[key]).ravel().astype(np.int64) - 1
    if "train_inds" in arrays and "valid_inds" in arrays:
        for kind in POST_KINDS:
            if kind in arrays:
                for split in ("train", "valid", "test"):
                    if f"{split}_inds" in arrays:
                        arrays[f"{split}_{kind}"] = arrays[kind][arrays[f"{split}_inds"]]
    attrs: dict[str, Any] = {"layout": layout.INTERNAL_LAYOUT}
    if "bin_size_ms" in mat:
        attrs["bin_size_ms"] = float(np.asarray(mat["bin_size_ms"]).ravel()[0])
    if "layout" in mat:
        attrs["input_layout"] = str(np.asarray(mat["layout"]).ravel()[0])
    attrs.update({k: int(np.asarray(mat[k]).ravel()[0]) for k in SEGMENT_ATTRS if k in mat})
    if "recording_start_s" in mat:
        attrs["recording_start_s"] = float(np.asarray(mat["recording_start_s"]).ravel()[0])
    return Outputs(arrays, attrs, origin)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    return v
