"""From what a user passes as data to the Dataset a model trains on: reading files and arrays,
the built-in synthetic datasets, calcium deconvolution, and the observation model the data
calls for. The API (api.py) and the CLI start here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from autolfads.config import Config, DataConfig
from autolfads.data.chaotic_rnn import DEFAULTS as CHAOTIC_RNN_DEFAULTS
from autolfads.data.chaotic_rnn import chaotic_rnn_dataset
from autolfads.data.content import trials_look_like_neurons
from autolfads.data.dataset import Dataset
from autolfads.data.deconvolve import (
    DeconvolveOptions,
    deconvolve_dataset,
    deconvolve_if_asked,
    deconvolve_warnings,
)
from autolfads.data.io import from_array, load_dataset
from autolfads.data.modalities import CALCIUM_DEFAULTS, EMG_DEFAULTS, modality_dataset
from autolfads.data.synthetic import lorenz_dataset, write_lorenz
from autolfads.data.writers import dataset_format, write_dataset
from autolfads.errors import UserInputError
from autolfads.model.observations.choose import check_training
from autolfads.model.observations.choose import resolve as resolve_observation
from autolfads.model.observations.choose import warnings as observation_warnings
from autolfads.rundir.layout import is_uri
from autolfads.rundir.location import Location

DataLike = str | Path | Dataset | np.ndarray | None


def load(path: str | Path, **data_options) -> Dataset:
    """Read and validate a dataset (.mat, LFADS .h5, .npz; a path or a gs:// / s3:// URI);
    options are `data` config keys."""
    return _read(path, _data_config(data_options))


def _read(location: str | Path, cfg: DataConfig) -> Dataset:
    with Location(location).local_copy() as path:
        dataset = load_dataset(path, cfg)
    if is_uri(location):
        dataset.source = str(location)
    return dataset


SYNTH_KINDS = ("lorenz", "chaotic_rnn", "emg", "calcium")


def synth(kind: str = "lorenz", seed: int = 0, out: str | Path | None = None,
          fmt: str | None = None, **params) -> Dataset:
    """A built-in synthetic dataset (with true rates); written to `out` when given.

    "lorenz": the demo data (no parameters). "chaotic_rnn": a chaotic RNN with one input pulse
    per trial (true input times included); params units, gain, pulse, neurons, trials, bins
    (see autolfads.data.chaotic_rnn). "emg" (Gamma-distributed, true means) and "calcium" (dF/F
    traces, true spike rates): Lorenz-driven, params in autolfads.data.modalities."""
    if kind not in SYNTH_KINDS:
        raise UserInputError(
            f"synth: unknown dataset '{kind}'; available: {', '.join(SYNTH_KINDS)}"
        )
    if kind == "lorenz":
        if params:
            raise UserInputError(f"synth lorenz: takes no parameters (got {', '.join(params)})")
        if out is not None:
            write_lorenz(out, seed=seed, fmt=fmt)
        return lorenz_dataset(seed=seed)
    known = {"emg": EMG_DEFAULTS, "calcium": CALCIUM_DEFAULTS,
             "chaotic_rnn": CHAOTIC_RNN_DEFAULTS}[kind]
    hidden = {"bin_size_s", "mean_rate_hz"} if kind == "chaotic_rnn" else set()
    unknown = sorted(set(params) - {*known, *hidden})
    if unknown:
        raise UserInputError(f"synth {kind}: unknown parameter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(known)}")
    ds = (chaotic_rnn_dataset(seed=seed, **params) if kind == "chaotic_rnn"
          else modality_dataset(kind, seed=seed, **params))
    if out is not None:
        write_dataset(out, ds, fmt=fmt)
    return ds


def deconvolve(data: str | Path, out: str | Path, options: DeconvolveOptions | None = None,
               log: Callable[[str], None] | None = None, **data_options) -> Dataset:
    """Calcium traces in `data` -> deconvolved events written to `out` (.h5 or .mat, by its
    extension), trial order, split and truth kept; data_options are `data` config keys."""
    out = Path(out)
    if out.exists():
        raise UserInputError(f"--out {out}: file exists; remove it or choose another name")
    dataset_format(out)  # a wrong extension is said before the work, not after
    ds = load(data, **data_options)
    say = log or _stderr
    say(f"data: {ds.source}: {ds.summary()}")

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            say(f"deconvolved {done}/{total} neurons")

    events = deconvolve_dataset(ds, options or DeconvolveOptions(), progress)
    found = events.all_data()
    if not found.any():
        raise UserInputError(f"{ds.source}: deconvolution found no events in any channel (flat "
                             "or noise-only traces); nothing was written")
    for line in deconvolve_warnings(ds.all_data(), found):
        say(line)
    write_dataset(out, events)
    return events


def resolve_data(data: DataLike, cfg: DataConfig, say: Callable[[str], None] | None = None
                 ) -> Dataset:
    """The dataset `data` names (None: built-in Lorenz), deconvolved when data.deconvolve."""
    if data is None:
        ds = lorenz_dataset(seed=0, cfg=cfg)
    elif isinstance(data, Dataset):
        ds = data
    elif isinstance(data, (np.ndarray, list, tuple)):  # a list: one array per trial
        layout = "trials_time_neurons" if cfg.layout == "auto" else cfg.layout
        ds = from_array(data, layout=layout, cfg=cfg, layout_guessed=cfg.layout == "auto")
        if cfg.layout == "auto" and isinstance(data, np.ndarray) and ds.segments is None \
                and trials_look_like_neurons(ds.all_data()):
            ds.meta.setdefault("warnings", []).append(
                f"the array is read as trials x time x neurons (Python's order): {ds.n_trials} "
                f"trials of {ds.n_neurons} neurons; if its first axis holds the neurons, set "
                "data.layout=neurons_time_trials")
    else:
        ds = _read(data, cfg)
    return deconvolve_if_asked(ds, cfg, say)


def data_lines(dataset: Dataset, obs_lines: list[str]) -> list[str]:
    """What to say about the data before training: its size and split, what the decode targets
    cover (when it has them), then choose_observation's lines."""
    lines = [f"data: {dataset.source}: {dataset.summary()}"]
    lines += [f"warning: {w}" for w in dataset.meta.get("warnings", [])]
    b, t_obs = dataset.behavior, dataset.n_observed_bins
    if b is not None:
        observed = "observed " if dataset.forward_bins else ""
        if dataset.segments is not None and not dataset.forward_bins:
            where = f"all {dataset.segments.n_bins} bins of the recording"
        elif b.shape[1] < t_obs:
            where = f"the last {b.shape[1]} of {t_obs} {observed}bins (aligned to the end)"
        else:
            where = f"all {b.shape[1]} {observed}bins"
        lines.append(f"decode targets: {b.shape[2]} variable(s) over {where}")
    return lines + obs_lines


def choose_observation(cfg: Config, dataset: Dataset) -> list[str]:
    """Settle cfg.model.observation for this data (auto: by the rule of observations/choose.py;
    an explicit choice: checked against the data) and return the lines to say before training:
    which model and why, then any warning about what the data can show."""
    values = dataset.all_data()
    auto = cfg.model.observation == "auto"
    name, why = resolve_observation(cfg.model.observation, values, dataset.source or "data")
    cfg.model.observation = name
    lines = [f"observation model: {name} ({why})", *observation_warnings(name, values),
             *check_training(name, dataset.train_data, values, dataset.source or "data")]
    if auto and name == "gaussian" and values.min() < 0:  # the usual signed signal: dF/F
        lines.append("note: if these are calcium dF/F traces, `--set data.deconvolve=true` "
                     "turns them into events first (OASIS), which AutoLFADS models better")
    if name != "poisson" and dataset.holds_out:
        lines.append("warning: held-out neurons / forward bins are kept from the encoders, but "
                     f"their scores (co-bps, fp-bps) are defined for spike counts only; with "
                     f"{name} data no held-out metric is computed")
    if name == "poisson" and not np.array_equal(values, np.round(values)):
        for sp in dataset.splits:  # counts off by float rounding: train and score on the counts
            counts = dataset.split(sp)
            np.round(counts, out=counts)
        lines.append("note: the counts were rounded to whole numbers (they were off by float "
                     "rounding only)")
    return lines


def _data_config(options: dict) -> DataConfig:
    try:
        return DataConfig(**options)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserInputError(f"--{key.replace('_', '-')} (data.{key}): {first['msg']}"
                             ) from None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
