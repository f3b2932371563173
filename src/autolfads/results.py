"""Run directories and the files a finished model leaves in them (DESIGN.md §3).

Shared by `autolfads train` and, later, the PBT runner: both end with one trained model whose
posterior-averaged outputs, metrics and config are written here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from autolfads.analysis import nlb
from autolfads.analysis.decoding import decoding_metrics
from autolfads.analysis.metrics import (
    INPUT_TIME_TOLERANCE_BINS,
    bits_per_spike,
    input_time_accuracy,
    r2_per_neuron,
    r2_pooled,
    r2_rates,
    smoothing_baseline,
    variance_explained,
)
from autolfads.config import Config, config_to_yaml
from autolfads.data.dataset import Dataset
from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri
from autolfads.rundir.location import atomic_write
from autolfads.rundir.outputs import write_outputs


def prepare_run_dir(out: str | Path, force: bool = False, resumable: bool = False,
                    inputs: tuple[object, ...] = ()) -> Path:
    """Create DIR for a new run. An earlier run there (a folder with layout.RUN_EVIDENCE) is
    replaced only with `force`, and then only what a run writes (layout.RUN_ENTRIES) is removed:
    files of the user's beside it stay. A folder of other files is never used, and `inputs`
    (the data file, the --config file) are never removed or written over."""
    if is_uri(str(out)):
        raise UserInputError(f"--out {out}: `train` writes to a local directory; use "
                             "`autolfads run` to write to a bucket, or copy the run there after")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"--out {path}: exists and is not a directory; choose another path")
    entries = sorted(e.name for e in path.iterdir()) if path.is_dir() else []
    run = any((path / f).exists() for f in layout.RUN_EVIDENCE)
    ours = [e for e in layout.RUN_ENTRIES if e in entries] if run else []
    # (hidden files, e.g. macOS's .DS_Store, and empty folders hold nothing to lose; they stay)
    theirs = [e for e in entries if e not in ours and not e.startswith(".")
              and not _empty_dir(path / e)]
    check_inputs(str(path), inputs, run)
    if theirs and not run:
        raise foreign(str(path), theirs)
    # Only the config of a `train` that was stopped before it saved anything (and the empty
    # folder a first save left): nothing to lose.
    abandoned = all(e in (layout.CONFIG, layout.RUN_JSON) or _empty_dir(path / e) for e in ours)
    if not abandoned:
        if not force and (path / layout.METRICS).exists():
            raise UserInputError(f"--out {path}: holds a finished run (metrics.json, outputs); "
                                 "choose another --out, or --force to delete it and train again")
        if not force:
            resume = "--resume to continue the run there, " if resumable else ""
            raise UserInputError(f"--out {path}: holds an earlier run; use {resume}--force to "
                                 "replace it, or choose another --out")
        for e in ours:  # only what a run writes: never the user's files beside it
            target = path / e
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"--out {path}: cannot create the directory ({e.strerror})") from None
    return path


def _empty_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink() and not any(p.iterdir())


def foreign(location: str, theirs: list[str]) -> UserInputError:
    """The error for an --out that holds files but no run (never suggests --force)."""
    shown = ", ".join(theirs[:4]) + (f" and {len(theirs) - 4} more" if len(theirs) > 4 else "")
    return UserInputError(f"--out {location}: holds files that are not an autolfads run "
                          f"({shown}); a run needs a folder of its own: choose a new or empty "
                          "--out")


def check_inputs(location: str, inputs: tuple[object, ...], run: bool) -> None:
    """An input where the run writes (inside its output/, model/, ...) would be deleted by
    --force or written over: refused, whatever the flags; local paths and bucket URIs alike.
    The config.yaml of an earlier run may be the --config of its rerun: it is read first."""
    def norm(x: str | Path) -> str:
        return str(x).rstrip("/") if is_uri(str(x)) else str(Path(x).resolve())

    base = norm(location)
    for given in inputs:
        if not isinstance(given, (str, Path)):
            continue
        inp = norm(given)
        for e in layout.RUN_ENTRIES:
            spot = f"{base}/{e}"
            if inp == spot and e == layout.CONFIG and run:
                continue
            if inp == spot or inp.startswith(spot + "/"):
                raise UserInputError(f"--out {location}: {given} is where the run writes its "
                                     f"own {e}; move it out of {location}, or choose another "
                                     "--out")


def write_text_atomic(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_config(out_dir: Path, cfg: Config) -> Path:
    return write_text_atomic(out_dir / layout.CONFIG, config_to_yaml(cfg))


def compute_metrics(dataset: Dataset, post: dict[str, np.ndarray],
                    observation: str = "poisson") -> dict[str, float]:
    """Bits/spike on held-out (validation) trials, for spike counts (Poisson) only, where it means
    something; with ground truth, R^2 against the true rates (means) for the model and for a
    Gaussian-smoothing baseline; with decode targets, their cross-validated R^2 from the inferred
    means and from smoothed data (analysis/decoding.py); with true input times and a controller,
    the fraction of trials whose inferred input peaks within 3 bins of the true input."""
    m: dict[str, float] = {}
    splits = dataset.splits
    # The headline split: test trials when there are any (never seen in training, early
    # stopping or PBT selection), else validation trials.
    head = "test" if dataset.has_test else "valid"
    if observation == "poisson":
        for sp in splits:
            m[f"bps_{sp}"] = bits_per_spike(post[f"{sp}_rates"], dataset.split(sp))
        m["bps"] = m[f"bps_{head}"]
        # how much the headline bits/spike rest on (few spikes: a noisy score, fit_warnings)
        m["spikes_per_neuron"] = float(dataset.split(head).sum()) / dataset.n_neurons
    else:  # a continuous signal: the variance the inferred means explain, bits/spike's analogue
        for sp in splits:
            m[f"var_explained_{sp}"] = variance_explained(post[f"{sp}_rates"], dataset.split(sp))
        m["var_explained"] = m[f"var_explained_{head}"]
    rates = dataset.to_original_order(*(post[f"{sp}_rates"] for sp in splits))
    data = dataset.all_data()
    # Scores over all the data: a continuous recording's over the merged recording, not its
    # overlapping segments (which count shared bins twice and cut the smoothing baseline's
    # kernel at every segment edge).
    whole = dataset.as_recorded
    all_rates, all_data = whole(rates), whole(data, merge=False)
    # (a truth that does not vary within its channels: data loading said R^2 is left out, and
    # metrics.json says why for the report)
    if dataset.has_truth and dataset.meta.get("truth_flat"):
        m["truth_flat"] = 1.0
    if dataset.has_truth and not dataset.meta.get("truth_flat"):
        truth = whole(dataset.all_truth(), merge=False)
        m["r2_rates"] = r2_rates(all_rates, truth)
        m["r2_tutorial"] = m["r2_rates"]  # the tutorial's compare_rates.m: squared correlation
        # Deconvolved events against the spike rates behind them: only correlations compare.
        same_units = not dataset.meta.get("truth_scale_free")
        for sp in ("valid", "test")[: len(splits) - 1]:
            pred, true = post[f"{sp}_rates"], dataset.split(sp, "truth")
            m[f"r2_rates_{sp}"] = r2_rates(pred, true)
            if same_units:  # 1 - SSE/SST, pooled and per neuron: what a reviewer means by R^2
                m[f"r2_{sp}"] = r2_pooled(pred, true)
                m[f"r2_per_neuron_{sp}"] = r2_per_neuron(pred, true)
        if same_units:
            m["r2_per_neuron"] = r2_per_neuron(all_rates, truth)
        base = smoothing_baseline(all_data, truth)
        m["r2_smoothing"] = float(base["r2_rates"])
        m["smoothing_sigma_bins"] = float(base["sigma_bins"])
    if observation == "poisson":  # scores of one split: a recording's held-out segments
        m.update(nlb_metrics(dataset, post, head, data))
    if dataset.behavior is not None:  # cross-validated ridge, as the tutorial decodes EMG
        # Forward bins have no behaviour to decode (data loading cut it to the observed bins).
        t_obs = all_rates.shape[1] - dataset.forward_bins
        m.update(decoding_metrics(all_rates[:, :t_obs], all_data[:, :t_obs],
                                  whole(dataset.behavior, merge=False)))
    times = dataset.true_input_times
    if times is not None and post["train_inferred_inputs"].shape[-1] > 0:
        inputs = dataset.to_original_order(*(post[f"{sp}_inferred_inputs"] for sp in splits))
        m["input_time_accuracy"] = input_time_accuracy(inputs, times)
        for sp in ("valid", "test")[: len(splits) - 1]:
            sp_times = np.asarray(times)[getattr(dataset, f"{sp}_inds")]
            m[f"input_time_accuracy_{sp}"] = input_time_accuracy(post[f"{sp}_inferred_inputs"],
                                                                 sp_times)
    return {k: float(v) for k, v in m.items()}


def nlb_metrics(dataset: Dataset, post: dict[str, np.ndarray], split: str,
                data: np.ndarray) -> dict[str, float]:
    """The Neural Latents Benchmark's metrics on `split` (test trials when there are any):
    co-bps with held-out neurons (and the smoothing baseline's), fp-bps with forward bins,
    PSTH R^2 with conditions and true rates, velocity R^2 with decode targets (ridge fitted on
    the training trials). data: dataset.all_data(), which the caller has."""
    m: dict[str, float] = {}
    rates, spikes = post[f"{split}_rates"], dataset.split(split)
    n_obs, heldout = dataset.n_observed_bins, dataset.heldout_neurons
    if len(heldout):
        m["co_bps"] = nlb.co_bps(rates, spikes, heldout, n_obs)
        inds = {sp: getattr(dataset, f"{sp}_inds") for sp in dataset.splits}
        m["co_bps_smoothing"], m["co_bps_smoothing_sigma_bins"] = nlb.smoothing_co_bps(
            data, heldout, n_obs, inds["train"], inds["valid"], inds[split])
    if dataset.forward_bins:
        m["fp_bps"] = nlb.fp_bps(rates, spikes, n_obs)
    cond, truth = dataset.conditions, dataset.all_truth()
    if cond is not None and truth is not None and dataset.holds_out:
        cond_split = np.asarray(cond)[getattr(dataset, f"{split}_inds")]
        labels = np.unique(cond_split)
        psth = np.stack([truth[np.asarray(cond) == c].mean(axis=0) for c in labels])
        m["psth_r2"] = nlb.psth_r2(psth, rates, [np.flatnonzero(cond_split == c)
                                                for c in labels])
    if dataset.behavior is not None and split != "train":
        beh, tb = dataset.behavior, dataset.behavior.shape[1]

        def flat(a: np.ndarray) -> np.ndarray:  # rates over the behaviour's bins, flattened
            return a[:, n_obs - tb : n_obs].reshape(-1, a.shape[-1])

        tr_inds, sp_inds = dataset.train_inds, getattr(dataset, f"{split}_inds")
        v = beh.shape[-1]
        m["vel_r2"] = nlb.velocity_r2(flat(post["train_rates"]), beh[tr_inds].reshape(-1, v),
                                      flat(rates), beh[sp_inds].reshape(-1, v))
    return m


def defined_metrics(metrics: dict, say) -> dict:
    """The metrics without those the data leaves undefined (NaN: bits/spike of trials without a
    spike, R^2 against a constant truth, ...), which `say` names: metrics.json stays valid JSON
    and no figure reads 'nan'. Data loading has warned of the usual causes."""
    undefined = [k for k, v in metrics.items()
                 if isinstance(v, float) and not np.isfinite(v)]
    if undefined:
        say(f"warning: undefined on this data, left out of metrics.json: {', '.join(undefined)}")
    return {k: v for k, v in metrics.items() if k not in undefined}


def write_results(
    out_dir: Path, dataset: Dataset, post: dict[str, np.ndarray], extra: dict,
    observation: str = "poisson", say=print,
) -> dict[str, float]:
    """Write output/lfads_output.{h5,mat} and metrics.json; return the metrics."""
    # (seconds on a long recording: 11 s of writing and 14 s of scoring for 100000 x 50 bins)
    say("writing the outputs (output/lfads_output.h5, .mat) and scoring them (metrics.json)")
    write_outputs(out_dir, dataset, post)
    metrics = defined_metrics({**extra, **compute_metrics(dataset, post, observation)}, say)
    write_text_atomic(out_dir / layout.METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


MIN_BPS = 0.01  # bits/spike below which the model is said to predict little beyond the means
# Below this many held-out spikes per neuron bits/spike is too noisy to say so: the baseline's
# means are fitted on the same spikes (an edge of ~0.7 / spikes per neuron), so true rates
# scored under 0.01 in 85% of draws of 20 trials at 1 Hz in an audit.
FEW_SPIKES = 200
OVERFIT_GAP = 0.05  # training score above the held-out one by this much, and twice it: said


def fit_warnings(m: dict) -> list[str]:
    """What the scores say about the fit: a model no better than the means on held-out data."""
    head, units = m.get("headline_split", "valid"), m.get("split_unit", "trials")
    unit = f"{head} {units}"
    out = []
    spikes = m.get("spikes_per_neuron", float("inf"))
    if m.get("bps", 1.0) < MIN_BPS and spikes < FEW_SPIKES:
        out.append(f"warning: bits/spike {m['bps']:.3f} on the {unit}, from {spikes:.0f} spikes "
                   "per neuron: too few to tell the model from each neuron's mean rate (more or "
                   "longer held-out trials would)")
    elif m.get("bps", 1.0) < MIN_BPS:  # (0.0003 on one neuron of pure noise, in an audit)
        how = "no" if m["bps"] <= 0 else "hardly"
        out.append(f"warning: bits/spike {m['bps']:.3f} on the {unit}: the model predicts them "
                   f"{how} better than each neuron's mean rate; the data may carry no dynamics "
                   "shared across neurons, or training stopped too early")
    # (a signal's variance explained is small for good models of sparse events: only <= 0 is
    # said, as even the true means of 1%-per-bin events explain 0.0002-0.002 of it)
    if m.get("var_explained", 1.0) <= 0:
        out.append(f"warning: the inferred means explain {m['var_explained']:.3f} of the "
                   f"{unit}' variance around each channel's mean: the model predicts them no "
                   "better than the means; the data may carry no dynamics shared across "
                   "channels, or training stopped too early")
    for key, what in (("bps", "bits/spike"), ("var_explained", "variance explained")):
        train, held = m.get(f"{key}_train"), m.get(f"{key}_{head}")
        if train is None or held is None or head == "train":
            continue
        if train > 0 and train - held >= OVERFIT_GAP and held < 0.5 * train:
            fix = ("widen the search space's dropout and coordinated-dropout ranges" if
                   "generations" in m else "`autolfads run` tunes dropout and coordinated "
                   "dropout against it")
            out.append(f"warning: {what} {train:.3f} on the training {units} but {held:.3f} "
                       f"on the {unit}: the model fits its training data far better than "
                       f"held-out data (overfitting); {fix}, or give more trials or a smaller "
                       "model")
    return out


def summary_line(m: dict, out_dir: Path | None) -> str:
    head = m.get("headline_split", "valid")
    parts = [f"done in {m['wall_s']:.0f}s ({m['epochs']} epochs)",
             f"valid recon {m['valid_recon']:.4f}"]
    unit = f"{head} {m.get('split_unit', 'trials')}"
    if "bps" in m:  # spike counts
        parts.append(f"bits/spike {m['bps']:.3f} ({unit})")
    elif "var_explained" in m:
        parts.append(f"variance explained {m['var_explained']:.3f} ({unit})")
    if "bps" not in m and f"nll_per_bin_{head}" in m:
        parts.append(f"{head} NLL per time bin (all channels) {m[f'nll_per_bin_{head}']:.3f}")
    nlb = [f"{label} {m[k]:.3f}" for k, label in (("co_bps", "co-bps"), ("fp_bps", "fp-bps"))
           if k in m]
    if nlb:
        parts.append(", ".join(nlb) + (f" (smoothing co-bps {m['co_bps_smoothing']:.3f})"
                                        if "co_bps_smoothing" in m else ""))
    if "r2_rates" in m:
        truth = "rates" if m.get("observation", "poisson") == "poisson" else "means"
        smooth = f" (smoothing {m['r2_smoothing']:.3f})" if "r2_smoothing" in m else ""
        over = "the whole recording" if m.get("split_unit") == "segments" else "all trials"
        parts.append(f"R^2 vs true {truth} {m['r2_rates']:.3f} over {over}{smooth}")
        if "r2_test" in m:
            parts.append(f"test-trial R^2 (1 - SSE/SST) {m['r2_test']:.3f}")
    if "decode_r2" in m:
        smooth = (f" (smoothing {m['decode_r2_smoothing']:.3f})"
                  if "decode_r2_smoothing" in m else "")
        parts.append(f"decoding R^2 {m['decode_r2']:.3f}{smooth}")
    if "input_time_accuracy" in m:
        parts.append(f"inferred input within {INPUT_TIME_TOLERANCE_BINS} bins of the true input on "
                     f"{100 * m['input_time_accuracy']:.0f}% of trials")
    if out_dir is not None:
        parts.append(f"outputs in {out_dir / 'output'}")
    return "; ".join(parts)
