"""An NWB file's units table: which units to read (data.units, curation columns), their spike
times (NaN padding dropped), when each was recorded (obs_intervals) and NLB's held-out units."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolfads.data.validate import listed
from autolfads.errors import UserInputError

NOISE_LABELS = ("noise", "bad", "artifact", "artefact")
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1", "1.0", "t", "y"), ("false", "no", "0", "0.0",
                                                                  "f", "n")


def units_kept(units, rule: str | None, p: Path) -> tuple[np.ndarray, list[str]]:
    """Which units to read (data.units = COLUMN=VALUE[,VALUE...]), and what to say: without a
    rule, a curation column that marks units as noise is pointed out."""
    n = len(units)
    if rule is None:
        for col in ("quality", "KSLabel", "label"):
            if col in units.colnames:
                vals = np.array([str(v).lower() for v in units[col][:]])
                noisy = int(np.isin(vals, NOISE_LABELS).sum())
                if noisy:
                    return np.ones(n, dtype=bool), [
                        f"{p}: the units table's {col} column marks {noisy} of {n} unit(s) as "
                        f"noise; all units are read (keep some with --set data.units={col}=good)"]
        return np.ones(n, dtype=bool), []
    col, _, values = rule.partition("=")
    if not col or not values:
        raise UserInputError(f"data.units={rule}: expected COLUMN=VALUE[,VALUE...], e.g. "
                             "quality=good")
    if col not in units.colnames:
        raise UserInputError(f"{p}: the units table has no column '{col}' (data.units); "
                             f"columns: {', '.join(units.colnames)}")

    def same(v: str, want: str) -> bool:  # "Good" is good, and 10 is 10.0
        v, want = str(v).strip().lower(), want.strip().lower()
        try:
            return v == want or float(v) == float(want)
        except ValueError:
            return False

    vals = np.array([str(v) for v in units[col][:]])
    keep = np.array([any(same(v, w) for w in values.split(",")) for v in vals])
    if not keep.any():
        raise UserInputError(f"{p}: no unit has {col} = {values} (data.units); its values: "
                             f"{', '.join(sorted(set(vals))[:8])}")
    return keep, [f"{p}: {int(keep.sum())} of {n} units read ({rule})"]


def spike_times(units, kept: np.ndarray, p: Path) -> tuple[list[np.ndarray], list[str]]:
    """Each kept unit's spike times in seconds, sorted; NaN or infinite times (padding some
    exports add) are left out and said."""
    if "spike_times" not in units.colnames:
        raise UserInputError(f"{p}: the units table has no spike_times column (its columns: "
                             f"{', '.join(units.colnames)}); autolfads reads spiking data from "
                             "the units' spike times")
    out, bad = [], {}
    for n, unit in enumerate(np.flatnonzero(kept)):
        s = np.asarray(units["spike_times"][int(unit)], dtype=np.float64).ravel()
        ok = np.isfinite(s)
        if not ok.all():
            bad[n] = int((~ok).sum())
        out.append(np.sort(s[ok]))
    said = [f"{p}: unit(s) {listed(np.array(sorted(bad)))} (0-based) have {sum(bad.values())} "
            "spike time(s) that are NaN or infinite (padding?): left out"] if bad else []
    return out, said


def _merged(iv: np.ndarray) -> np.ndarray:
    """Intervals (k x 2) with those that touch or overlap joined: [0, 5] and [5, 9] are [0, 9]."""
    iv = iv[np.argsort(iv[:, 0])]
    out = [iv[0].copy()] if len(iv) else []
    for a, b in iv[1:]:
        if a <= out[-1][1] + 1e-9:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append(np.array([a, b]))
    return np.array(out).reshape(-1, 2)


def unit_warnings(units, kept: np.ndarray, edges: np.ndarray, p: Path) -> list[str]:
    """Units whose obs_intervals leave out part of some trial window: silence there is not
    recorded silence."""
    if "obs_intervals" not in units.colnames:
        return []
    lo, hi = edges[:, 0], edges[:, -1]
    short = {}
    for n, unit in enumerate(np.flatnonzero(kept)):  # n: the unit's index among those read
        iv = _merged(np.asarray(units["obs_intervals"][int(unit)], dtype=np.float64)
                     .reshape(-1, 2))
        covered = ((iv[:, None, 0] <= lo) & (iv[:, None, 1] >= hi)).any(axis=0)
        if not covered.all():
            short[n] = int((~covered).sum())
    if not short:
        return []
    n, k = max(short.items(), key=lambda kv: kv[1])
    return [f"{p}: unit(s) {listed(np.array(sorted(short)))} (0-based) were not recorded during "
            f"all of the trial windows (their obs_intervals; unit {n} misses {k} of "
            f"{len(lo)}): their counts there read as silence"]


def heldout(units, kept: np.ndarray, p: Path) -> list[int]:
    """NLB's `heldout` units column (True/False, 1/0 or words such as "yes"/"no"): the held-out
    units' indices among those read."""
    vals = units["heldout"][:]
    try:
        flags = [_flag(v) for v in vals]
    except ValueError as e:
        raise UserInputError(f"{p}: the units table's heldout column holds {e}; expected "
                             "true/false (or set data.heldout_neurons)") from None
    return [int(i) for i in np.flatnonzero(np.asarray(flags, dtype=bool)[kept])]


def _flag(v) -> bool:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        w = v.strip().lower()
        if w in TRUE_WORDS or w in FALSE_WORDS:
            return w in TRUE_WORDS
        raise ValueError(repr(v))
    if isinstance(v, float) and np.isnan(v):
        raise ValueError("NaN")
    return bool(v)
