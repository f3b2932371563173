"""`autolfads export DIR --format mat|h5|npz [--out FILE]`: the run's outputs in another format.

Source: DIR/output/lfads_output.h5 (or the .mat when only that is left). Layouts (DESIGN.md §3):
  mat  MATLAB, like the tutorial: rates, factors, inferred_inputs as dim x time x trials,
       ic_mean as dim x trials, original trial order; train_inds/valid_inds 1-based rows;
       truth and conditions (1-based) when known; bin_size_ms when known.
  h5   the LFADS layout of lfads_output.h5: trials first, per split and in original order,
       0-based indices, the same attributes.
  npz  every array of the .h5 under the same name (trials first, 0-based indices).
An existing FILE is never replaced without `force`; the write is atomic (temp file + rename).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolfads.analysis.rundir import Outputs, RunDir, read_outputs
from autolfads.errors import UserInputError
from autolfads.storage import atomic_write, is_uri

FORMATS = ("mat", "h5", "npz")
SUFFIXES = {"mat": (".mat",), "h5": (".h5", ".hdf5"), "npz": (".npz",)}
REQUIRED = ("rates", "train_inds", "valid_inds")
MATLAB_ARRAYS = ("rates", "factors", "inferred_inputs", "truth")  # trials x time x dim
MATLAB_LAYOUT = "neurons_time_trials"


def export(location: str | Path, fmt: str, out: str | Path | None = None,
           force: bool = False) -> Path:
    """Write the run's outputs as `fmt` to `out` (default DIR/output/lfads_output.<fmt>)."""
    if fmt not in FORMATS:
        raise UserInputError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    rd = RunDir(location)
    rd.check("export")
    target = _target(rd, fmt, out, force)
    outputs = read_outputs(rd)
    if outputs is None:
        raise UserInputError(f"{rd.location}: no outputs yet; output/lfads_output.h5 is written "
                             "when the run finishes (see `autolfads status`)")
    missing = [k for k in REQUIRED if outputs.get(k) is None]
    if missing:
        raise UserInputError(f"{outputs.origin}: incomplete outputs, missing "
                             f"{', '.join(missing)}; rerun the run to rewrite them")
    writer = {"mat": _write_mat, "h5": _write_h5, "npz": _write_npz}[fmt]
    # Everything is in memory by now, so even exporting over the source file itself is safe.
    return atomic_write(target, lambda tmp: writer(tmp, outputs))


def _target(rd: RunDir, fmt: str, out: str | Path | None, force: bool) -> Path:
    if out is None:
        if rd.remote:
            raise UserInputError(f"{rd.location}: a remote run directory needs --out FILE (a "
                                 "local file to write)")
        target = rd.local(f"output/lfads_output.{fmt}")
    elif is_uri(out):
        raise UserInputError(f"--out {out}: must be a local file; copy it to the bucket "
                             "afterwards")
    else:
        target = Path(out)
    if target.suffix.lower() not in SUFFIXES[fmt]:
        raise UserInputError(f"--out {target}: does not end in {' or '.join(SUFFIXES[fmt])}; "
                             f"name it e.g. {target.with_suffix(SUFFIXES[fmt][0]).name}")
    if target.is_dir():
        raise UserInputError(f"--out {target}: is a directory; give a file name")
    if target.exists() and not force:
        raise UserInputError(f"--out {target}: file exists; add --force to replace it, or "
                             "choose another --out")
    return target


def matlab_dict(outputs: Outputs) -> dict[str, object]:
    """The .mat variables: dim x time x trials, original order, 1-based indices."""
    a = outputs.arrays
    mdict: dict[str, object] = {}
    for key in MATLAB_ARRAYS:
        if key in a and np.asarray(a[key]).ndim == 3:
            mdict[key] = np.asarray(a[key]).transpose(2, 1, 0)
    if "ic_mean" in a and np.asarray(a["ic_mean"]).ndim == 2:
        mdict["ic_mean"] = np.asarray(a["ic_mean"]).T
    for key in ("train_inds", "valid_inds"):
        mdict[key] = (np.asarray(a[key], dtype=np.float64) + 1.0).reshape(1, -1)
    cond = a.get("conditions")
    if cond is not None and np.asarray(cond).dtype.kind in "iuf":
        mdict["conditions"] = (np.asarray(cond, dtype=np.float64) + 1.0).reshape(1, -1)
    if outputs.bin_size_ms:
        mdict["bin_size_ms"] = outputs.bin_size_ms
    layout = outputs.attrs.get("input_layout")
    if isinstance(layout, str) and layout != MATLAB_LAYOUT:
        mdict["layout"] = layout  # arrays are neurons x time x trials; this records the input's
    return mdict


def _write_mat(tmp: Path, outputs: Outputs) -> None:
    import scipy.io

    scipy.io.savemat(tmp, matlab_dict(outputs), appendmat=False, do_compression=True,
                     oned_as="row")


def _write_h5(tmp: Path, outputs: Outputs) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        for key, arr in outputs.arrays.items():
            arr = np.asarray(arr)
            # gzip needs chunks, which HDF5 refuses for zero-sized axes (co_dim = 0)
            opts = {"compression": "gzip", "compression_opts": 4} if arr.ndim and arr.size else {}
            f.create_dataset(key, data=arr, **opts)
        for key, value in outputs.attrs.items():
            f.attrs[key] = value


def _write_npz(tmp: Path, outputs: Outputs) -> None:
    extra: dict[str, np.ndarray] = {"layout": np.array("trials_time_neurons")}
    if outputs.bin_size_ms:
        extra["bin_size_ms"] = np.array(outputs.bin_size_ms)
    with tmp.open("wb") as f:  # a file object: np.savez would append .npz to a bare name
        np.savez_compressed(f, **{**outputs.arrays, **extra})
