"""The Python API: `load`, `synth`, `train`, `run`.

    import autolfads
    ds = autolfads.load("session.mat")              # neurons x time x trials
    res = autolfads.train(ds, out="runs/s1", epochs=200)
    res.rates                                        # trials x time x neurons, original order
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autolfads.config import Config, load_config
from autolfads.data.dataset import Dataset
from autolfads.data.fingerprint import check_same_data
from autolfads.errors import RunFailed, UserInputError
from autolfads.inputs import (  # noqa: F401  (load, synth, deconvolve: part of the API)
    DataLike,
    choose_observation,
    data_lines,
    deconvolve,
    load,
    resolve_data,
    synth,
)
from autolfads.results import (
    compute_metrics,
    defined_metrics,
    fit_warnings,
    prepare_run_dir,
    summary_line,
    write_config,
    write_results,
    write_text_atomic,
)
from autolfads.run_start import keep_old_split, prepare_store, resume_data, write_run_json
from autolfads.rundir import layout
from autolfads.rundir.location import Location
from autolfads.training.loop import Trainer
from autolfads.training.process import resolve_device, setup_process
from autolfads.training.resumable import Keeper, interrupted_training, load_state
from autolfads.training.sampling import posterior_outputs


@dataclass
class TrainResult:
    out: Path | None
    dataset: Dataset
    config: Config
    metrics: dict[str, float]
    posterior: dict[str, np.ndarray]  # train_/valid_ rates, factors, inferred_inputs, ic_mean
    history: list[dict] = field(default_factory=list)
    trainer: Trainer | None = None

    def _all(self, key: str) -> np.ndarray:
        return self.dataset.to_original_order(*(self.posterior[f"{sp}_{key}"]
                                                for sp in self.dataset.splits))

    @property
    def rates(self) -> np.ndarray:
        """Posterior-averaged rates, trials x time x neurons in the original trial order."""
        return self._all("rates")

    @property
    def factors(self) -> np.ndarray:
        return self._all("factors")

    @property
    def inferred_inputs(self) -> np.ndarray:
        return self._all("inferred_inputs")

    def continuous(self, key: str = "rates") -> np.ndarray:
        """A continuous recording's output (rates, factors, inferred_inputs) merged over its
        segments, time x dim, as `rates_continuous` etc. in the output files."""
        if self.dataset.segments is None:
            raise UserInputError("continuous(): these data have trials, not one recording; "
                                 "use .rates / .factors / .inferred_inputs")
        keys = ("rates", "factors", "inferred_inputs")
        if key not in keys:
            raise UserInputError(f"continuous(): unknown output '{key}'; use one of "
                                 f"{', '.join(keys)}")
        return self.dataset.segments.merge(self._all(key))


def train(
    data: DataLike = None,
    out: str | Path | None = None,
    *,
    config: str | Path | Config | None = None,
    overrides: list[str] | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train one LFADS model with fixed hyperparameters and write the outputs to `out`.

    `data`: a path, a Dataset, an array (trials x time x neurons unless data.layout says
    otherwise) or None for the built-in Lorenz data. `resume=True` continues the interrupted
    training in `out` from its last completed epoch (same data; its config, with `overrides`
    and `epochs` applied).
    """
    if resume and (config is not None or seed is not None):
        raise UserInputError("--resume continues with the run's own config.yaml and random "
                             "state: leave out --config and --seed (change settings with --set)")
    if resume:
        out_dir = interrupted_training(out)
        cfg = load_config(out_dir / layout.CONFIG, overrides)
        data = resume_data(out_dir, data)
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if epochs is not None:
        _set_option(cfg.train, "epochs", epochs)
    if seed is not None:
        _set_option(cfg.train, "seed", seed)
    say = (lambda _m: None) if quiet else (log or _stderr)
    dataset = resolve_data(data, cfg.data, say)

    def same_data() -> None:
        check_same_data(Location(out_dir).read_json(layout.RUN_JSON) or {}, dataset, data)

    # bad data is said before --out is touched
    obs_lines = _observation(cfg, dataset, same_data if resume else None)
    resolve_device(cfg.train.device)  # so is a GPU that is not there
    if resume:
        same_data()
    else:
        out_dir = None if out is None else prepare_run_dir(
            out, force, resumable=(Path(out) / layout.TRAIN_STATE).is_file(),
            inputs=(data, config))

    _say_all(say, data_lines(dataset, obs_lines))
    t0 = time.perf_counter()
    trainer = Trainer(cfg, dataset, shard_threads=setup_process(cfg.train))
    if resume:
        load_state(trainer, out_dir, cfg)
        say(f"continuing on {trainer.device} after epoch {trainer.state.epoch} of up to "
            f"{cfg.train.epochs}")
    else:
        say(f"training LFADS on {trainer.device} for up to {cfg.train.epochs} epochs")
    if out_dir is not None:
        write_config(out_dir, cfg)
        write_run_json(out_dir, "train", data, dataset)
    keeper = Keeper(trainer, out_dir, say, on_keep=lambda: _write_history(
        out_dir / layout.TRAIN_LOG, trainer.state.history))
    try:
        state = keeper.fit()
        result = _kept_model(trainer, state, dataset, cfg, out_dir, t0, say)
    except KeyboardInterrupt:
        keeper.interrupted()
        raise
    except RunFailed:  # diverged: a resume would only fail again
        keeper.done()
        raise
    keeper.done()
    return result


def _kept_model(trainer: Trainer, state, dataset: Dataset, cfg: Config, out_dir: Path | None,
                t0: float, say: Callable[[str], None]) -> TrainResult:
    """The trained model's checks, checkpoint and log, then its outputs (_finish)."""
    if not math.isfinite(state.best):  # never a finite validation cost: nothing to report
        raise RunFailed(f"training diverged: the validation cost was not finite from epoch 1 "
                        f"on (last: {state.smoothed}); check the data's scale and values, or "
                        "lower train.lr")
    if state.best_epoch == 0 and state.epoch >= 10:
        say(f"warning: the validation cost was lowest at epoch 1 of {state.epoch}: the model "
            "kept is barely trained; the data may carry too little signal to learn (noise, "
            "very sparse spikes), channels may behave differently in the validation trials, "
            "or train.lr may be too high")
    trainer.use_best_weights()
    if out_dir is not None:
        trainer.save(out_dir / layout.MODEL_CHECKPOINT)
        _write_history(out_dir / layout.TRAIN_LOG, state.history)
    extra = {"valid_recon": state.best, "best_epoch": state.best_epoch + 1,
             "epochs": state.epoch}
    return _finish(trainer, dataset, cfg, out_dir, extra, t0, say)


def _finish(trainer: Trainer, dataset: Dataset, cfg: Config, out_dir: Path | None, extra: dict,
            t0: float, say: Callable[[str], None]) -> TrainResult:
    """Posterior sample-and-average with the chosen model, then outputs and metrics."""
    say(f"posterior sample-and-average ({cfg.train.n_samples} samples per trial)")
    post = posterior_outputs(trainer)
    obs = trainer.cfg.model.observation
    valid = trainer.evaluate(trainer.valid_x, trainer.valid_ext, trainer.valid_sv,
                             trainer.valid_dt, trainer.valid_in)
    extra = {**extra, "wall_s": time.perf_counter() - t0, "device": str(trainer.device),
             "observation": obs, "nll_per_bin_valid": valid.recon * dataset.n_neurons,
             "headline_split": "test" if dataset.has_test else "valid",
             # what the split shares out: a continuous recording's segments, or trials
             "split_unit": "segments" if dataset.segments is not None else "trials"}
    if trainer.test_x is not None:
        test = trainer.evaluate(trainer.test_x, trainer.test_ext, None,
                                trainer.model.obs.data_term(trainer.test_x), trainer.test_in)
        extra["nll_per_bin_test"] = test.recon * dataset.n_neurons
    if out_dir is not None:
        metrics = write_results(out_dir, dataset, post, extra, obs, say)
        try:
            _refresh_report(out_dir, dataset, cfg)
        except Exception as e:  # noqa: BLE001  (the outputs are written; the page is extra)
            say(f"report not written: {type(e).__name__}: {e}")
    else:
        metrics = defined_metrics({**extra, **compute_metrics(dataset, post, obs)}, say)
    for line in fit_warnings(metrics):
        say(line)
    say(summary_line(metrics, out_dir))
    return TrainResult(out_dir, dataset, cfg, metrics, post, trainer.state.history, trainer)


def run(
    data: DataLike = None,
    out: str | Path = "runs/autolfads",
    *,
    population: int | None = None,
    generations: int | None = None,
    epochs_per_generation: int | None = None,
    address: str | None = None,
    workers_per_gpu: int | None = None,
    cpus_per_worker: float | None = None,
    max_failures: int | None = None,
    config: str | Path | Config | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """AutoLFADS: train a population of LFADS models with PBT, then sample the best one.

    The returned result's `metrics` include the best worker and its hyperparameters;
    per-generation logs are in `out/pbt/`. `resume=True` continues an interrupted run in `out`
    from its last completed generation (same data, same config unless overridden here); a
    finished run is a UserInputError that says how to extend it, and nothing in `out` changes.
    """
    from autolfads.pbt.resume import check_same_run, resume_point
    from autolfads.pbt.runner import check_address, run_pbt
    from autolfads.pbt.search_space import build_space

    say = (lambda _m: None) if quiet else (log or _stderr)
    store = Location(out)
    if resume:
        if not store.has_run():
            raise UserInputError(f"--resume: {out} holds no autolfads run (no config.yaml)")
        store.fetch(*layout.RESUME_FILES)
        cfg = load_config(store.local / layout.CONFIG, overrides)
        keep_old_split(cfg, store.local / layout.CONFIG)
        data = resume_data(store.local, data)
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
    for key, value in (("population", population), ("generations", generations),
                       ("epochs_per_generation", epochs_per_generation), ("seed", seed),
                       ("workers_per_gpu", workers_per_gpu), ("cpus_per_worker", cpus_per_worker),
                       ("max_failures", max_failures)):
        if value is not None:
            _set_option(cfg.pbt, key, value)
    build_space(cfg.pbt.search_space)  # a bad search space is reported before anything starts
    if cfg.train.device.startswith("cuda") and cfg.pbt.workers_per_gpu == 0:
        raise UserInputError(f"train.device={cfg.train.device}: PBT workers get GPUs only with "
                             "--workers-per-gpu N (pbt.workers_per_gpu); with 0 they train on "
                             "CPUs")
    if cfg.train.device == "cpu" and cfg.pbt.workers_per_gpu > 0:  # GPUs held, never used
        raise UserInputError(f"--workers-per-gpu {cfg.pbt.workers_per_gpu} with train.device=cpu:"
                             " the workers would hold GPUs and train on CPUs; use "
                             "train.device=auto, or --workers-per-gpu 0")
    what = "--address" if address else "cluster.address"
    address = address or cfg.cluster.address
    check_address(address, what=what)
    # Read once, here: a finished run, or nothing to resume, is reported before any file is
    # written, and run_pbt starts from this point.
    point = resume_point(store.local, store.location, cfg.pbt) if resume else None
    dataset = resolve_data(data, cfg.data, say)
    obs_lines = _observation(cfg, dataset, (lambda: check_same_run(store, cfg, dataset, data))
                             if resume else None)  # before anything is written to --out
    if resume:
        check_same_run(store, cfg, dataset, data)
    else:
        prepare_store(store, force, inputs=(data, config))
        write_run_json(store.local, "run", data, dataset)
    out_dir = store.local
    write_config(out_dir, cfg)
    store.sync()

    p = cfg.pbt
    _say_all(say, data_lines(dataset, obs_lines))
    say(f"AutoLFADS: population {p.population}, up to {p.generations} generations of "
        f"{p.epochs_per_generation} epochs, {p.cpus_per_worker:g} CPU per worker"
        + (f", {p.workers_per_gpu} workers per GPU" if p.workers_per_gpu else ""))
    t0 = time.perf_counter()
    result = run_pbt(dataset, cfg, store, address=address, resume=point, log=say,
                     after_generation=lambda d: _refresh_report(d, dataset, cfg))
    say(f"best worker {result.best.worker} (score {result.best.score:.5f}) after "
        f"{result.generations} generations" +
        (f"; stopped: {result.stopped_reason}" if result.stopped_reason else ""))

    best_cfg = cfg.model_copy(deep=True)
    best_cfg.train.device = device_here(best_cfg.train.device, say)
    trainer = Trainer(best_cfg, dataset, shard_threads=setup_process(best_cfg.train))
    trainer.load(result.best_checkpoint)
    trainer.set_hparams(result.best.hparams)
    extra = {"valid_recon": result.best.score, "generations": result.generations,
             "epochs": trainer.state.epoch, "best_worker": result.best.worker,
             "pbt_wall_s": result.wall_s, "stopped_reason": result.stopped_reason or "",
             **{f"hp_{k}": v for k, v in result.best.hparams.items()}}
    res = _finish(trainer, dataset, best_cfg, out_dir, extra, t0, say)
    if store.remote:
        store.sync()
        say(f"run uploaded to {store.location} (local copy: {out_dir})")
    return res


def device_here(name: str, say: Callable[[str], None]) -> str:
    """The device this process samples the best model on: train.device where this machine has
    it, else its CPU (a cluster's head has no GPU; the workers that trained did)."""
    try:
        resolve_device(name)
    except UserInputError:
        say(f"train.device={name} is not available on this machine: sampling the best model "
            "on its CPU")
        return "cpu"
    return name




def _observation(cfg: Config, dataset: Dataset, same_run: Callable[[], None] | None
                 ) -> list[str]:
    """choose_observation; on --resume (`same_run`: the check that these are the run's data),
    data its model cannot take are first checked to be the run's: other data is the error."""
    try:
        return choose_observation(cfg, dataset)
    except UserInputError:
        if same_run is not None:
            same_run()
        raise


def _say_all(say: Callable[[str], None], lines: list[str]) -> None:
    for line in lines:
        say(line)


def _refresh_report(out_dir: Path, dataset: Dataset, cfg: Config) -> None:
    if not cfg.train.report:  # (train.report=false: only `autolfads report` writes it)
        return
    from autolfads.analysis.report import write_report

    write_report(out_dir, dataset=dataset)


def _set_option(section: object, key: str, value: object) -> None:
    """A command-line option's value into its config section; out of range: one error line."""
    try:
        setattr(section, key, value)
    except ValueError as e:  # pydantic's ValidationError: out of range (e.g. --max-failures -2)
        msg = e.errors()[0]["msg"] if hasattr(e, "errors") else str(e)
        raise UserInputError(f"--{key.replace('_', '-')} {value}: {msg}") from None


def _write_history(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
