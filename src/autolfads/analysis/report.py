"""`autolfads report DIR`: DIR/report/index.html with its PNG figures beside it.

One page, no network (no scripts, fonts or styles from elsewhere), five sections:
summary, hyperparameters (evolution per worker, exploits marked, scores), trials (rasters with
inferred and true rates), latents (factor PCs, inferred inputs) and metrics (R^2 and bits/spike
against the smoothing baseline). Sections whose inputs do not exist yet (a live run has no
outputs; a train-only run has no population) are kept with a sentence saying why, so the page
always has the same shape.

Writes are atomic and in an order that keeps the page consistent while a browser reloads it:
each PNG is replaced whole, then index.html, then PNGs the new page no longer uses are removed.
The runner calls `write_report` after every generation; while a run is live the page reloads
itself every REFRESH_S seconds.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autolfads.analysis import plots
from autolfads.analysis import report_data as rdata
from autolfads.analysis.metrics import INPUT_TIME_TOLERANCE_BINS, input_time_accuracy
from autolfads.analysis.report_data import RunView
from autolfads.analysis.report_text import INPUTS_CAVEAT, REFRESH_S, decoding_table
from autolfads.analysis.report_text import best_line as _best_line
from autolfads.analysis.report_text import data_line as _data_line
from autolfads.analysis.report_text import duration as _duration
from autolfads.analysis.report_text import e as _e
from autolfads.analysis.report_text import note as _note
from autolfads.analysis.report_text import num as _num
from autolfads.analysis.report_text import split_line as _split_line
from autolfads.analysis.report_text import status as _status
from autolfads.data.dataset import Dataset
from autolfads.data.segments import Stretch
from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri
from autolfads.rundir.location import Location, atomic_write

SECTIONS = (("summary", "Run summary"), ("hyperparameters", "Hyperparameters and scores"),
            ("trials", "Example trials"), ("latents", "Latent factors and inferred inputs"),
            ("metrics", "R^2 and bits per spike"))
CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;font-variant-numeric:tabular-nums}th{background:#f4f4f4}img{max-width:100%}
.note{color:#775;background:#fffbe8;border-left:3px solid #eb5;padding:.4em .8em}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}nav a{margin-right:1em}"""


def write_report(run_dir: str | Path, dataset: Dataset | None = None) -> Path:
    """Write DIR/report/index.html (+ PNGs) and return its path. `dataset`: the run's data when
    the caller has it in memory (the runner), else it is found from the run directory."""
    if is_uri(run_dir):
        return _write_remote_report(str(run_dir), dataset)
    rd = Location(run_dir)
    out_dir = rd.local / layout.REPORT
    rd.check("report")
    view = rdata.gather(rd, dataset)
    page = _Page(out_dir)
    body = [f'<section id="{sid}"><h2>{title}</h2>\n{build(view, page)}\n</section>'
            for (sid, title), build in zip(SECTIONS, BUILDERS, strict=True)]
    index = out_dir / "index.html"
    atomic_write(index, lambda tmp: tmp.write_text(_html(view, body), encoding="utf-8"))
    for old in out_dir.glob("*.png"):
        if old.name not in page.images:
            old.unlink(missing_ok=True)
    return index


def _write_remote_report(location: str, dataset: Dataset | None) -> Path:
    """A run in a bucket: its files (not the checkpoints) are copied to a local folder, the report
    is written there and uploaded to <run>/report/. Returns the local index.html, which a
    browser can open."""
    store = Location(location)
    if not store.has_run():
        raise UserInputError(f"{location}: not an autolfads run directory (no config.yaml)")
    store.pull()
    index = write_report(store.local, dataset)
    store.sync(under=layout.REPORT)
    return index


class _Page:
    """Collects the figures of one page: each saved as report/NAME.png and referenced by name."""

    def __init__(self, out_dir: Path):
        self.dir = out_dir
        self.images: list[str] = []

    def figure(self, name: str, fig, caption: str, alt: str) -> str:
        fname = f"{name}.png"
        plots.save_png(fig, self.dir / fname)
        self.images.append(fname)
        return (f'<figure><img src="{fname}" alt="{_e(alt)}">'
                f"<figcaption>{_e(caption)}</figcaption></figure>")


# ---------------------------------------------------------------------- sections


def _summary(v: RunView, page: _Page) -> str:
    p, d = v.section("pbt"), v.section("data")
    rows: list[tuple[str, str]] = []
    rows.append(("run", "AutoLFADS (population based training)" if v.pbt
                 else "single LFADS model (autolfads train)"))
    rows.append(("status", _status(v)))
    rows.append(("data", _data_line(v)))
    split = _split_line(v, d)
    if split:
        rows.append(("split", split))
    if v.bin_ms:
        rows.append(("bin width", f"{v.bin_ms:g} ms"))
    if v.pbt:
        gens = max(v.log.generations) if v.log.rows else 0
        rows.append(("population", f"{p.get('population', len(v.log.workers))} workers"))
        rows.append(("generations", f"{gens} done of at most {p.get('generations', '?')}, "
                     f"{p.get('epochs_per_generation', '?')} epochs each"))
    elif v.metrics:
        rows.append(("epochs", f"{v.metrics.get('epochs', '?')} (best at epoch "
                     f"{v.metrics.get('best_epoch', '?')})"))
    wall = v.elapsed_s()
    if wall is not None and math.isfinite(wall):
        rows.append(("wall time" if v.finished else "running for", _duration(wall)))
    best = _best_line(v)
    if best:
        rows.append(("best worker", best))
    m = v.metrics or {}
    truth = "rates" if v.counts else "means"
    head = "test" if m.get("headline_split") == "test" else "validation"
    final = [f"{label} {m[k]:.4g}" for k, label in (
        ("valid_recon", "valid recon cost"), ("bps", f"bits/spike ({head})"),
        ("var_explained", f"variance explained ({head})"),
        ("nll_per_bin_valid", f"{v.observation} NLL per time bin, all channels (validation)"),
        ("nll_per_bin_test", f"{v.observation} NLL per time bin, all channels (test)"),
        ("decode_r2", "decoding R^2"),
        ("co_bps", "co-bps"), ("co_bps_smoothing", "co-bps of smoothing"), ("fp_bps", "fp-bps"),
        ("r2_rates", f"R^2 vs true {truth}"), ("r2_smoothing", "R^2 of smoothing"),
        ("input_time_accuracy", "fraction of trials whose inferred input peaks within "
         f"{INPUT_TIME_TOLERANCE_BINS} bins of the true input"))
        if isinstance(m.get(k), (int, float)) and v.finished]
    rows.append(("final metrics", ", ".join(final) if final else "when the run finishes"))
    html_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(val)}</td></tr>" for k, val in rows)
    out = f"<table>{html_rows}</table>"
    hp = (v.best or {}).get("hyperparameters")
    if isinstance(hp, dict) and hp:
        cells = "".join(f"<tr><td>{_e(k)}</td><td>{_num(x)}</td></tr>" for k, x in hp.items())
        out += f"<h3>Best worker's hyperparameters</h3><table>{cells}</table>"
    return out


def _hyperparameters(v: RunView, page: _Page) -> str:
    if not v.pbt:
        if not v.train_log:
            return _note("a single model (autolfads train) has no population to show, and "
                         "train_log.csv is not written yet")
        fig = plots.training_curve(v.train_log)
        return (_note("a single model (autolfads train): no population or hyperparameter search; "
                      "its training curve instead")
                + page.figure("training", fig, "Reconstruction costs per epoch; the model with "
                              "the best smoothed validation cost is kept.", "training curve"))
    if not v.log.rows:
        return _note("no generation has finished yet; pbt/hp_log.csv appears after the first")
    space = _space(v)
    names = v.log.names
    log_scale = {n: _is_log(n, space, v) for n in names}
    labels = {n: n + (" (log axis)" if log_scale[n] else "") for n in names}
    fig = plots.population_evolution(v.log, v.decisions, names, log_scale, labels)
    hp_html = page.figure(
        "hyperparameters", fig,
        "Each worker's hyperparameters in each generation (log axis where the search range is "
        "logarithmic). A dashed segment ending in a triangle is an exploit: after generation g "
        "the worker copied the weights and hyperparameters of a better worker, then perturbed "
        "the hyperparameters (explore).", "hyperparameter evolution")
    fig = plots.population_evolution(v.log, v.decisions, ["score"], {"score": False},
                                     {"score": "smoothed validation recon cost (lower is better)"})
    n_exp = sum(d.exploited for d in v.decisions.values())
    score_html = page.figure(
        "scores", fig, f"Score of every worker in every generation; {n_exp} exploits in all, "
        "marked as above.", "scores per worker and generation")
    return hp_html + score_html


def _trials(v: RunView, page: _Page) -> str:
    """Example trials: rasters with rates (counts) or traces with means (continuous signals);
    for a continuous recording, stretches of the merged outputs around validation segments."""
    if v.outputs is None or v.outputs.get("rates") is None:
        return _note(v.notes.get("outputs", "no outputs yet"))
    rates = v.outputs.arrays["rates"]
    spikes, truth = rdata.spikes_and_truth(v)
    seg = v.segments
    stretches = None
    if seg is not None and v.outputs.get("rates_continuous") is not None:
        stretches = rdata.recording_stretches(v, seg)
        rates = _stretched(stretches, v.outputs.arrays["rates_continuous"])
        spikes, truth = (None if a is None else _stretched(stretches, seg.join(a))
                         for a in (spikes, truth))
        trials = list(range(len(stretches)))
        where = ", ".join(f"{s.first + 1}-{s.end}" for s in stretches)
        which = (f"Stretches of the recording (bins {where}, 1-based) from its merged outputs "
                 "(rates_continuous, ...); shaded: held-out segments, validation grey, test "
                 "blue. ")
    else:
        trials = rdata.example_trials(v)
        which = _which(v, trials) + ". "
    what = "mean" if not v.counts else "rate"
    if not v.counts:
        fig = plots.example_traces(rates, trials, spikes, truth, v.bin_ms, stretches)
        caption = (f"The {plots.N_TRACE_CHANNELS} most active channels: observed signal (grey) "
                   "and inferred mean of the " + v.observation.replace("_", "-")
                   + " model (solid), in the data's units")
    else:
        fig = plots.example_trials(rates, trials, spikes, truth, v.bin_ms, stretches)
        caption = (f"Top: inferred rates ({plots.rate_units(v.bin_ms)[1]}) per neuron over time"
                   + ("; circles are spikes (larger = more spikes in the bin)"
                      if spikes is not None else "")
                   + ". Bottom: the three busiest neurons, inferred rate (solid)")
    true = f" and true {what} (dashed)"
    if v.truth_scale_free:
        true = f" and true {what} (dashed, in other units than the data: compare shapes)"
    caption = (which + caption + (true if truth is not None else "")
               + (", one panel per channel." if not v.counts else "."))
    out = ""
    if spikes is None:
        out += _note(v.notes.get("data", "the input data was not found"))
    if truth is None:
        out += _note(f"the data has no true {what}s, so inferred {what}s are shown without them")
    return out + page.figure("trials", fig, caption, "example trials")


def _stretched(stretches: list[Stretch], recording: np.ndarray) -> np.ndarray:
    """stretches x bins x dim from a time-first recording."""
    return np.stack([s.of(recording) for s in stretches])


def _which(v: RunView, trials: list[int]) -> str:
    """Which trials a figure shows; for a continuous recording, which of its segments."""
    shown = ", ".join(str(k + 1) for k in trials)
    starts = v.outputs.get("segment_starts") if v.outputs is not None else None
    if starts is None:
        return f"Validation trials {shown} (1-based, original order)"
    first = ", ".join(str(int(starts[k]) + 1) for k in trials)
    return (f"Validation segments {shown} of the recording (1-based; they begin at its bins "
            f"{first}; the outputs hold the whole recording merged as rates_continuous, ...)")


def _latents(v: RunView, page: _Page) -> str:
    out = v.outputs
    if out is None or out.get("factors") is None:
        return _note(v.notes.get("outputs", "no outputs yet"))
    merged, seg = out.get("factors_continuous"), v.segments
    if seg is not None and merged is not None:  # one trajectory: pieces of it, not segments
        pieces = plots.recording_pieces(np.asarray(merged), seg.length)
        fig, caption = plots.factor_trajectories(pieces, None, "piece")
        caption = (f"the merged recording (factors_continuous) cut into pieces of {seg.length} "
                   f"bins, PCs over all of it; {caption}")
    else:
        unit = "segment" if v.recording else "trial"
        fig, caption = plots.factor_trajectories(out.arrays["factors"], rdata.conditions(v), unit)
    html_out = page.figure("factors", fig, "Latent factors projected on their first three "
                           f"principal components: {caption}", "factor trajectories")
    inputs = out.get("inferred_inputs")
    if inputs is None or inputs.ndim != 3 or inputs.shape[2] == 0:
        return html_out + _note("no inferred inputs: the controller is off (model.co_dim = 0)")
    merged = out.get("inferred_inputs_continuous")
    if seg is not None and merged is not None:
        stretches = rdata.recording_stretches(v, seg)
        fig = plots.inputs_in_stretches(_stretched(stretches, merged), stretches, v.bin_ms)
        return html_out + page.figure(
            "inputs", fig, "Inferred inputs (inferred_inputs_continuous) over the stretches of "
            "the recording shown above; shaded: held-out segments, which share no bin with a "
            f"training segment, so the outputs may step at their edges. {INPUTS_CAVEAT}",
            "inferred inputs")
    times = out.get("true_input_times")
    times = None if times is None or len(times) != len(inputs) else np.asarray(times)
    fig = plots.inferred_inputs(inputs, rdata.example_trials(v), v.bin_ms, times)
    caption = ("Inferred inputs over time for the example trials, with the mean +- sd over all "
               "trials (grey).")
    if times is not None:
        found = input_time_accuracy(inputs, times)
        caption += (" Dotted: each example trial's true input time. The inferred input of "
                    f"{100 * found:.0f}% of all trials deviates most from the average trial's "
                    f"within {INPUT_TIME_TOLERANCE_BINS} bins of the true input time.")
    return html_out + page.figure("inputs", fig, f"{caption} {INPUTS_CAVEAT}", "inferred inputs")


def _metrics(v: RunView, page: _Page) -> str:
    rows, panels = rdata.metric_rows(v)
    if not rows:
        return _note(v.notes.get("outputs", "no metrics yet")) + decoding_table(v.metrics or {})
    if not v.counts and not any(r["r2"] is not None or r["r2n"] is not None for r in rows):
        # A continuous recording without truth: the likelihood is the only score.
        m = v.metrics or {}
        nll = ", ".join(f"{sp} {m[f'nll_per_bin_{sp}']:.4g}" for sp in ("valid", "test")
                        if isinstance(m.get(f"nll_per_bin_{sp}"), (int, float)))
        why = ("the true means vary only between channels, so no R^2" if v.truth_flat else
               "no true means in the data, so no R^2 (that needs synthetic data)")
        return (_note(f"{why}; the "
                      f"measure for a real recording is the {v.observation.replace('_', '-')} "
                      "negative log-likelihood per bin, summed over channels (lower is better)"
                      + (f": {nll}" if nll else ""))
                + decoding_table(m))
    what = "rates" if v.counts else "means"
    head = (f"<tr><th>method</th><th>trials</th><th>R^2 vs true {what} (pooled, as "
            "compare_rates.m)</th><th>mean R^2 per channel</th>"
            + ("<th>bits/spike</th>" if v.counts else "") + "</tr>")
    body = "".join(f"<tr><td>{_e(r['method'])}</td><td>{_e(r['trials'])}</td>"
                   f"<td>{_num(r['r2'])}</td><td>{_num(r['r2n'])}</td>"
                   + (f"<td>{_num(r['bps'])}</td>" if v.counts else "") + "</tr>" for r in rows)
    out = f"<table>{head}{body}</table>" + decoding_table(v.metrics or {})
    recording = v.segments is not None
    over = "the recording's bins (its segments merged)" if recording else "all trials, bins"
    if not v.counts:
        out += (f"<p>R^2: squared correlation of the inferred and the true {what} over {over} "
                "and channels; the smoothing baseline smooths the observed signal. Bits per "
                "spike only apply to spike counts: for this "
                f"{v.observation.replace('_', '-')} model metrics.json gives the validation "
                "negative log-likelihood per bin (nll_per_bin_valid).</p>")
    else:
        out += (f"<p>R^2: squared correlation of inferred and true rates over {over} "
                "and neurons. Bits/spike: Poisson log-likelihood gain over each neuron's mean "
                "rate, per spike (higher is better). "
                + ("The smoothing width is the one that matches the true rates best (an oracle "
                   "choice, so the baseline is strong). " if "__truth__" in panels else
                   "The smoothing width is 2 bins (without true rates there is none to choose "
                   "by). ")
                + "Its bits/spike "
                "use rates made without each bin's own count (a rate cannot be scored on the "
                "spike it was made from), mixed with the neuron's mean rate; width and weight are "
                "chosen on the training trials."
                + (" A recording is smoothed whole, so a held-out segment's baseline also sees "
                   "the bins beside it, which LFADS does not." if recording else "") + "</p>")
    if "__truth__" not in panels:
        if v.truth_flat:
            out += _note("the true rates vary only between neurons, not in time or from trial "
                         "to trial, so R^2 against them would score the neurons' mean rates "
                         "alone: it is left out")
        elif not any(r["r2"] is not None for r in rows):  # counts (continuous: above)
            out += _note("no true rates in the data: R^2 needs ground truth (synthetic data); "
                         "bits/spike is the measure for real recordings")
        return out
    truth = panels.pop("__truth__")
    units = None if v.counts else (1.0, "data units")
    fig = plots.rates_vs_truth(list(panels.items()), truth, v.bin_ms, units=units,
                               same_units=not v.truth_scale_free)
    sample = "bins x neurons of the recording" if recording else "trials x bins x neurons"
    line = ("the truth is in other units than the data (e.g. spike rates behind calcium "
            "events), so there is no y = x line and R^2 is a squared correlation"
            if v.truth_scale_free
            else "the line is y = x")
    return out + page.figure("rates_vs_truth", fig, f"Inferred vs true rates (a random sample of "
                             f"{sample}); {line}.", "rates vs truth")


BUILDERS: tuple[Callable[[RunView, _Page], str], ...] = (
    _summary, _hyperparameters, _trials, _latents, _metrics)


# ---------------------------------------------------------------------- helpers


def _space(v: RunView) -> dict:
    from autolfads.config import HPOverride
    from autolfads.pbt.search_space import build_space

    try:
        raw = v.section("pbt").get("search_space") or {}
        return build_space({k: HPOverride(**o) for k, o in raw.items()})
    except Exception:  # a run from another version: fall back on the values themselves
        return {}


def _is_log(name: str, space: dict, v: RunView) -> bool:
    """Log axis where the search range is logarithmic: a log-uniform start, or a positive range
    spanning two decades or more (lr starts fixed but is explored over 1e-5..5e-3)."""
    hp = space.get(name)
    if hp is not None:
        return hp.init == "log_uniform" or (hp.low > 0 and hp.high / hp.low >= 100)
    col = v.log.table(name)
    col = col[np.isfinite(col)]
    return bool(col.size and (col > 0).all() and col.max() / col.min() >= 100)


def _html(v: RunView, body: list[str]) -> str:
    title = f"autolfads report: {Path(v.rd.location).resolve().name}"
    live = not v.finished and v.interrupted is None
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if live else ""
    nav = "".join(f'<a href="#{sid}">{t}</a>' for sid, t in SECTIONS)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n"
            f"<h1>{_e(title)}</h1><p>{_e(str(Path(v.rd.location).resolve()))} &middot; "
            f"generated {stamp} &middot; {_e(_status(v))}</p><nav>{nav}</nav>\n"
            + "\n".join(body) + "\n</body></html>\n")
