"""`autolfads export DIR --format mat|h5|npz [--out FILE]`: the run's outputs in another format.

Source: DIR/output/lfads_output.h5 (or the .mat when only that is left). Layouts (DESIGN.md §3):
  mat  MATLAB, like the tutorial: rates, factors, inferred_inputs as dim x time x trials,
       ic_mean as dim x trials, original trial order; train_inds/valid_inds 1-based rows;
       truth and conditions (1-based) when known; bin_size_ms when known.
  h5   the LFADS layout of lfads_output.h5: trials first, per split and in original order,
       0-based indices, the same attributes.
  npz  every array of the .h5 under the same name (trials first, 0-based indices).
An existing FILE is never replaced without `force`; the write is atomic (temp file + rename).
The formats themselves are written by rundir/outputs.py.
"""

from __future__ import annotations

from pathlib import Path

from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri
from autolfads.rundir.location import Location, atomic_write
from autolfads.rundir.outputs import WRITERS, read_outputs

FORMATS = tuple(WRITERS)
SUFFIXES = {"mat": (".mat",), "h5": (".h5", ".hdf5"), "npz": (".npz",)}
REQUIRED = ("rates", "train_inds", "valid_inds")


def export(location: str | Path, fmt: str, out: str | Path | None = None,
           force: bool = False) -> Path:
    """Write the run's outputs as `fmt` to `out` (default DIR/output/lfads_output.<fmt>)."""
    if fmt not in FORMATS:
        raise UserInputError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    rd = Location(location)
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
    writer = WRITERS[fmt]
    # Everything is in memory by now, so even exporting over the source file itself is safe;
    # over the data the run trained on (run.json), never, even with --force.
    data = (rd.read_json(layout.RUN_JSON) or {}).get("data")
    return atomic_write(target, lambda tmp: writer(tmp, outputs),
                        protect=data if data and not is_uri(data) else None)


def _target(rd: Location, fmt: str, out: str | Path | None, force: bool) -> Path:
    if out is None:
        if rd.remote:
            raise UserInputError(f"{rd.location}: a remote run directory needs --out FILE (a "
                                 "local file to write)")
        target = rd.local / f"{layout.OUTPUT_STEM}.{fmt}"
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
