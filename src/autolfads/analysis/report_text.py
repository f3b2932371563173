"""The report's sentences about a run (its state, data, split, best worker) and the small HTML
helpers its sections share."""

from __future__ import annotations

import html
import math
import re

from autolfads.analysis.report_data import RunView
from autolfads.rundir import layout

REFRESH_S = 30  # a live run's page reloads itself this often


def status(v: RunView) -> str:
    if v.finished:
        reason = (v.metrics or {}).get("stopped_reason")
        return "finished" + (f" ({reason})" if reason else "")
    if v.interrupted:
        return v.interrupted
    if v.pbt and v.log.rows:
        return (f"in progress: generation {max(v.log.generations)} of at most "
                f"{v.section('pbt').get('generations', '?')} done (this page reloads every "
                f"{REFRESH_S} s)")
    return "in progress (no results yet)"


def data_line(v: RunView) -> str:
    ds, out = v.dataset, v.outputs
    unit = "neurons" if v.counts else "channels"
    if ds is not None:
        if ds.segments is not None:
            return f"{ds.source}: {ds.segments.describe(f'{ds.n_neurons} {unit}')}"
        return f"{ds.source}: {ds.n_trials} trials x {ds.n_time} bins x {ds.n_neurons} {unit}"
    src = (v.rd.read_json(layout.RUN_JSON) or {}).get("data") or (
        out.attrs.get("source") if out is not None else None)
    shape = ""
    if out is not None and out.get("rates") is not None:
        k, t, n = out.arrays["rates"].shape
        shape = f"{k} trials x {t} bins x {n} {unit}"
        if "recording_bins" in out.attrs:
            shape = (f"one recording of {int(out.attrs['recording_bins'])} bins x {n} {unit}, "
                     f"cut into {k} segments of {t} bins")
    return ": ".join(x for x in (src, shape) if x) or "not known yet"


def split_line(v: RunView, d: dict) -> str:
    out, ds = v.outputs, v.dataset
    if out is not None and out.get("train_inds") is not None and out.get("valid_inds") is not None:
        n_tr, n_va = len(out.arrays["train_inds"]), len(out.arrays["valid_inds"])
        n_te = len(out.arrays["test_inds"]) if out.get("test_inds") is not None else 0
    elif ds is not None:
        n_tr, n_va, n_te = len(ds.train_inds), len(ds.valid_inds), len(ds.test_inds)
    else:
        return ""
    unit = "segment" if v.recording else "trial"
    if v.recording:  # blocks of one segment are held out (data/segments.py split_plan)
        every, rest = "block of one segment", ", each a segment that shares no bin with training"
    else:
        every, rest = "trial", " unless the file gives a split"
    rule = (f"every {d.get('valid_every', 5)}th {every} to validation{rest}"
            if d.get("split", "every_nth") == "every_nth"
            else f"seeded random (seed {d.get('split_seed', 0)}){rest}")
    test = f" / {n_te} test" if n_te else f", no test {unit}s"
    return f"{n_tr} train / {n_va} validation{test} ({rule})"


def best_line(v: RunView) -> str:
    b = v.best
    if not v.pbt or not b:
        return ""
    return (f"worker {b.get('worker')} in generation {b.get('generation')}, score "
            f"{num(b.get('score'))}")


def note(text: str) -> str:
    return f'<p class="note">{e(text)}</p>'


def e(x: object) -> str:
    return html.escape(str(x))


def num(x: object) -> str:
    if x is None or not isinstance(x, (int, float)):
        return "&ndash;" if x is None else e(x)
    if not math.isfinite(x):
        return e(x)
    return f"{x:.3e}" if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4) else f"{x:.4g}"


def duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


# (an audit: on an autonomous rotation with no input the inferred inputs swung by +-2, by
# condition, and model.co_dim=0 fitted as well, R^2 0.980 against 0.982)
INPUTS_CAVEAT = ("Inferred inputs are what the generator did not produce on its own: they can "
                 "carry part of the dynamics even where nothing external drives them; a run "
                 "with --set model.co_dim=0 (no controller) that fits as well says they are not "
                 "needed.")


def decoding_table(m: dict) -> str:
    """Decode targets' cross-validated R^2: from the inferred rates and from smoothed data."""
    if not isinstance(m.get("decode_r2"), (int, float)):
        return ""
    # Targets are numbered; a constant one is left out of the metrics, so numbers may skip.
    targets = sorted(int(k.rsplit("_", 1)[1]) for k in m
                     if re.fullmatch(r"decode_r2_\d+", k))
    cells = [(str(k), m[f"decode_r2_{k}"], m.get(f"decode_r2_smoothing_{k}")) for k in targets]
    cells.append(("mean", m["decode_r2"], m.get("decode_r2_smoothing")))
    body = "".join(f"<tr><td>{e(k)}</td><td>{num(a)}</td><td>{num(b)}</td></tr>"
                   for k, a, b in cells)
    sigma = m.get("decode_smoothing_sigma_bins")
    return ("<h3>Decoding</h3><table><tr><th>target</th><th>from LFADS</th><th>from smoothed "
            f"data (sigma {num(sigma)} bins)</th></tr>{body}</table><p>Cross-validated R^2 "
            "(10 folds, ridge, standardised inputs and targets) of each decode target from the "
            "inferred rates and from the best Gaussian-smoothed data.</p>")
