"""Write outputs and datasets: LFADS .h5 (trials first) and MATLAB .mat (dim x time x trials).

Every write is atomic (temp file in the target's directory, then os.replace), so a crash never
leaves a half-written file, and a write that would land on the input data file is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from autolfads.data.dataset import INTERNAL_LAYOUT, MATLAB_LAYOUT, Dataset
from autolfads.errors import UserInputError
from autolfads.storage import atomic_write

POST_KINDS = ("rates", "factors", "inferred_inputs", "ic_mean")

def _atomic_write(path: str | Path, write: Callable[[Path], None], dataset: Dataset) -> Path:
    """Write via a temp file in the target's directory, then os.replace (never a half file)."""
    path = Path(path)
    src = Path(dataset.source)
    if src.is_file() and path.exists() and os.path.samefile(path, src):
        raise UserInputError(f"{path}: is the input data file; refusing to overwrite it")
    return atomic_write(path, write)


def _h5_put(f: h5py.File, name: str, arr: np.ndarray) -> None:
    arr = np.asarray(arr)
    # gzip needs chunking, which HDF5 refuses for zero-sized axes (e.g. co_dim = 0).
    opts = {"compression": "gzip", "compression_opts": 4} if arr.ndim and arr.size else {}
    f.create_dataset(name, data=arr, **opts)


def _merge_post(dataset: Dataset, post: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each posterior output for all trials in original order; checks the split shapes."""
    merged = {}
    for kind in POST_KINDS:
        tr, va = np.asarray(post[f"train_{kind}"]), np.asarray(post[f"valid_{kind}"])
        if len(tr) != len(dataset.train_inds) or len(va) != len(dataset.valid_inds):
            raise ValueError(
                f"train_{kind}/valid_{kind} have {len(tr)}/{len(va)} trials, dataset has "
                f"{len(dataset.train_inds)}/{len(dataset.valid_inds)}"
            )
        if tr.shape[1:] != va.shape[1:]:
            raise ValueError(f"train_{kind} {tr.shape} and valid_{kind} {va.shape} differ")
        merged[kind] = dataset.to_original_order(tr.astype(np.float32), va.astype(np.float32))
    if merged["rates"].shape[1:] != (dataset.n_time, dataset.n_neurons):
        raise ValueError(f"rates {merged['rates'].shape} do not match the data's time x neurons")
    return merged


def _to_matlab(arr: np.ndarray) -> np.ndarray:
    """trials x time x dim -> dim x time x trials; trials x dim -> dim x trials."""
    return np.asarray(arr).T if arr.ndim == 2 else np.asarray(arr).transpose(2, 1, 0)


def _one_based_row(inds: np.ndarray) -> np.ndarray:
    return (np.asarray(inds, dtype=np.float64) + 1.0).reshape(1, -1)


def write_outputs(
    out_dir: str | Path, dataset: Dataset, post: dict[str, np.ndarray]
) -> dict[str, Path]:
    """Write DIR/output/lfads_output.h5 (trials first) and .mat (MATLAB layout), see DESIGN §3."""
    out = Path(out_dir) / "output"
    merged = _merge_post(dataset, post)
    truth = dataset.all_truth()

    def write_h5(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for kind in POST_KINDS:
                for split in ("train", "valid"):
                    _h5_put(f, f"{split}_{kind}", np.asarray(post[f"{split}_{kind}"], np.float32))
                _h5_put(f, kind, merged[kind])
            _h5_put(f, "train_inds", dataset.train_inds.astype(np.int64))
            _h5_put(f, "valid_inds", dataset.valid_inds.astype(np.int64))
            if truth is not None:
                _h5_put(f, "truth", truth)
            if dataset.conditions is not None and dataset.conditions.dtype.kind in "iuf":
                _h5_put(f, "conditions", dataset.conditions)
            f.attrs["layout"] = INTERNAL_LAYOUT
            f.attrs["input_layout"] = dataset.layout
            f.attrs["source"] = dataset.source
            if dataset.bin_size_s is not None:
                f.attrs["bin_size_ms"] = dataset.bin_size_s * 1000.0

    def write_mat(tmp: Path) -> None:
        mdict = {kind: _to_matlab(merged[kind]) for kind in POST_KINDS}
        mdict["train_inds"] = _one_based_row(dataset.train_inds)
        mdict["valid_inds"] = _one_based_row(dataset.valid_inds)
        if truth is not None:
            mdict["truth"] = _to_matlab(truth)
        if dataset.layout != MATLAB_LAYOUT:
            # Arrays here are always neurons x time x trials; this records the input's layout.
            mdict["layout"] = dataset.layout
        if dataset.bin_size_s is not None:
            mdict["bin_size_ms"] = dataset.bin_size_s * 1000.0
        scipy.io.savemat(tmp, mdict, appendmat=False, do_compression=True, oned_as="row")

    return {
        "h5": _atomic_write(out / "lfads_output.h5", write_h5, dataset),
        "mat": _atomic_write(out / "lfads_output.mat", write_mat, dataset),
    }


def write_lfads_h5(path: str | Path, dataset: Dataset) -> Path:
    """The dataset as an LFADS .h5 (trials x time x neurons, 0-based inds); reads back the same."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            _h5_put(f, "train_data", dataset.train_data.astype(np.int32))
            _h5_put(f, "valid_data", dataset.valid_data.astype(np.int32))
            _h5_put(f, "train_inds", dataset.train_inds.astype(np.int64))
            _h5_put(f, "valid_inds", dataset.valid_inds.astype(np.int64))
            for stem in ("truth", "ext_input"):
                for split in ("train", "valid"):
                    arr = getattr(dataset, f"{split}_{stem}")
                    if arr is not None:
                        _h5_put(f, f"{split}_{stem}", arr.astype(np.float32))
            if dataset.conditions is not None and dataset.conditions.dtype.kind in "iuf":
                _h5_put(f, "conditions", dataset.conditions)
            if dataset.bin_size_s is not None:
                f.create_dataset("bin_size_ms", data=dataset.bin_size_s * 1000.0)

    return _atomic_write(path, write, dataset)


def write_tutorial_mat(path: str | Path, dataset: Dataset) -> Path:
    """The dataset as the tutorial's .mat: `data` neurons x time x trials, 1-based indices."""

    def write(tmp: Path) -> None:
        mdict: dict[str, object] = {
            "data": _to_matlab(dataset.all_data()).astype(np.float64),
            "train_inds": _one_based_row(dataset.train_inds),
            "valid_inds": _one_based_row(dataset.valid_inds),
        }
        truth = dataset.all_truth()
        if truth is not None:
            mdict["truth"] = _to_matlab(truth).astype(np.float64)
        cond = dataset.conditions
        if cond is not None:
            numeric = cond.dtype.kind in "iuf"
            mdict["conditions"] = _one_based_row(cond) if numeric else cond
        if dataset.bin_size_s is not None:
            mdict["bin_size_ms"] = dataset.bin_size_s * 1000.0
        scipy.io.savemat(tmp, mdict, appendmat=False, do_compression=True, oned_as="row")

    return _atomic_write(path, write, dataset)
