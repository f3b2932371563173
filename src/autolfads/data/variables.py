"""The variables of .mat (MATLAB v5 via scipy, v7.3 via h5py) and .npz files: the data variable
and the optional ones io.py knows, as numpy arrays in the file's own axis order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from autolfads.errors import UserInputError


def unreadable(p: Path, kind: str, err: Exception) -> UserInputError:
    first = (str(err).splitlines() or [type(err).__name__])[0]
    return UserInputError(
        f"{p}: could not be read as {kind} ({first}); check the file is complete and not corrupt"
    )


# MATLAB classes that hold their values in the file (anything else is an object's handle)
MATLAB_ARRAYS = {"double", "single", "logical", "char", "cell", "struct", *(
    f"{u}int{b}" for u in ("", "u") for b in (8, 16, 32, 64))}
KINDS = {"mat": "a MATLAB .mat file", "hdf5": "an HDF5 file", "npz": "a numpy .npz (zip) archive"}
SUFFIX_KIND = {".mat": "mat", ".h5": "hdf5", ".hdf5": "hdf5", ".npz": "npz"}


def file_kind(p: Path) -> str | None:
    """What a file is by its content (a key of KINDS), whatever its name; None when its first
    bytes do not say (MATLAB v4, a truncated or foreign file): then its suffix decides."""
    with p.open("rb") as f:
        head = f.read(128)
    if head.startswith((b"MATLAB 5.0 MAT-file", b"MATLAB 7.3 MAT-file")):  # v7.3: HDF5 after
        return "mat"  # MATLAB's 512-byte header
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    if not h5py.is_hdf5(p):
        return None
    try:  # HDF5 without MATLAB's header, but with its class attributes (other v7.3 writers)
        with h5py.File(p, "r") as f:  # (an LFADS file is one whoever wrote it)
            lfads = "train_data" in f or "valid_data" in f
            matlab = not lfads and any("MATLAB_class" in f[k].attrs for k in f)
    except (OSError, RuntimeError, KeyError):
        matlab = False
    return "mat" if matlab else "hdf5"


def read_mat(p: Path, variable: str, optional: tuple[str, ...]
             ) -> tuple[list[str], dict[str, object]]:
    """Variables of a .mat file: MATLAB v7.3 is HDF5 (via h5py), older versions via scipy.
    `variable` may name a field of a struct: S.spikes (or S/spikes), as MATLAB writes it."""
    top, *fields = variable.replace("/", ".").split(".")
    if h5py.is_hdf5(p):
        return _read_mat73(p, {top, *optional}, variable, (top, fields))
    wanted = [top, *optional]
    try:
        names = [entry[0] for entry in scipy.io.whosmat(p)]
        values = scipy.io.loadmat(p, variable_names=[v for v in wanted if v in names])
    except Exception as e:  # scipy raises many types for truncated / non-MAT files
        raise unreadable(p, "a MATLAB .mat file", e) from None
    values = {k: v for k, v in values.items() if not k.startswith("__")}
    if fields and top in values:  # scipy's struct: a 1 x 1 record array of 1 x 1 object cells
        values[variable] = _field(values[top], top, fields, p, _v5_fields,
                                  lambda v, name, path: _v5_child(v, name, f"{p}: '{path}'"))
    return names, values


def _field(obj: object, top: str, fields: list[str], p: Path,
           fields_of: Callable[[object], list[str] | None],
           child: Callable[[object, str, str], object]) -> object:
    """The field `top.fields...` of a struct, one level at a time: `fields_of` an object's
    field names (None: not a struct), `child(obj, name, path)` the field itself."""
    path = top
    for name in fields:
        names = fields_of(obj)
        if names is None:
            raise UserInputError(f"{p}: variable '{path}' is not a struct; it has no field "
                                 f"'{name}'")
        if name not in names:
            raise UserInputError(f"{p}: struct '{path}' has no field '{name}' (its fields: "
                                 f"{', '.join(names)})")
        obj, path = child(obj, name, path), f"{path}.{name}"
    return obj


def _v5_fields(v: object) -> list[str] | None:
    names = np.asarray(v).dtype.names
    return list(names) if names else None


def _v5_child(v: object, name: str, what: str) -> object:
    a = np.asarray(v)
    if a.size > 1 and a.squeeze().ndim == 1:  # a struct array: the field of each, as a cell
        out = np.empty(a.size, dtype=object)  # array (one trial each: data/ragged.py)
        out[:] = list(a[name].ravel())
        return out
    if a.size != 1:
        raise UserInputError(f"{what} is a {' x '.join(map(str, a.shape))} array of structs; "
                             "save the data of all of them as one numeric array")
    return a[name].ravel()[0]


def _h5_fields(obj: object) -> list[str] | None:
    plain = isinstance(obj, h5py.Group) and "MATLAB_sparse" not in obj.attrs
    return sorted(obj) if plain else None


def _read_mat73(p: Path, wanted: set[str], variable: str, field: tuple[str, list[str]]
                ) -> tuple[list[str], dict[str, object]]:
    top, fields = field
    try:
        with h5py.File(p, "r") as f:
            names = sorted(k for k in f if not k.startswith("#"))
            values = {k: _mat73_value(f[k], p, k) for k in names if k in wanted}
            if fields and top in f:
                obj = _field(f[top], top, fields, p, _h5_fields, lambda o, n, _: o[n])
                values[variable] = _mat73_value(obj, p, variable)
            return names, values
    except (OSError, RuntimeError, KeyError) as e:
        raise unreadable(p, "a MATLAB v7.3 (HDF5) file", e) from None


def _mat73_value(obj: h5py.Dataset | h5py.Group, p: Path, name: str) -> object:
    if not isinstance(obj, h5py.Dataset):
        if "MATLAB_sparse" in obj.attrs:
            raise UserInputError(f"{p}: variable '{name}': is a sparse matrix; save it as a full "
                                 "array (full(...)) in MATLAB")
        # a struct: reported as one later, with its fields
        return np.zeros(1, dtype=[(k, "f8") for k in sorted(obj)] or [("field", "f8")])
    cls = obj.attrs.get("MATLAB_class", b"double")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if cls not in MATLAB_ARRAYS:  # an object (table, datetime, string, ...): handles, no data
        raise UserInputError(f"{p}: variable '{name}': is a MATLAB {cls} object, not an array; "
                             "save its numbers as a numeric array (e.g. table2array(T))")
    if obj.attrs.get("MATLAB_empty", 0):
        return np.zeros((0,))
    arr = np.asarray(obj[()])
    if cls == "char":
        return "".join(chr(c) for c in arr.ravel())
    # A cell: references to one dataset per cell, e.g. a cellstr of condition labels; a struct
    # array's field: the same, without a class of its own.
    if cls == "cell" or h5py.check_ref_dtype(obj.dtype) is not None:
        cells = [_mat73_value(obj.file[ref], p, name) for ref in arr.ravel()]
        out = np.empty(len(cells), dtype=object)
        for i, cell in enumerate(cells):  # one by one: equal-shaped cells must not broadcast
            out[i] = cell
        return out.reshape(arr.shape).T
    if arr.dtype.names and {"real", "imag"} <= set(arr.dtype.names):  # MATLAB complex
        arr = arr["real"] + 1j * arr["imag"]
    # MATLAB stores column-major, so HDF5 sees the axes reversed; .T restores MATLAB's order.
    arr = arr.T
    return arr.astype(bool) if cls == "logical" else arr


def read_npz(p: Path, variable: str, optional: tuple[str, ...]
             ) -> tuple[list[str], dict[str, object]]:
    try:
        with np.load(p, allow_pickle=False) as z:
            names = sorted(z.files)
            values = {k: z[k] for k in {variable, *optional} if k in names}
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise unreadable(p, "a numpy .npz archive", e) from None
        raise UserInputError(  # never unpickled: a data file must not run code
            f"{p}: holds an object array (e.g. trials of different lengths, saved as a list); "
            "save one numeric 3-D array instead, e.g. np.savez(path, data=np.stack(trials)) "
            "with every trial cut to the same number of bins") from None
    except Exception as e:  # zipfile.BadZipFile, truncation, ...
        raise unreadable(p, "a numpy .npz archive", e) from None
    return names, values


def layout_text(value: object) -> str:
    """A file's `layout` entry as text, however it was saved: a Python str or bytes, numpy text
    (MATLAB's char arrays read by scipy come as a one-element array)."""
    v = value if isinstance(value, (str, bytes)) else np.asarray(value).ravel()[0]
    return v.decode() if isinstance(v, bytes) else str(v)
