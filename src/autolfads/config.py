"""Typed configuration: one YAML file with sections `data`, `model`, `train` (more join later).

Every key can be overridden from the command line as `--set section.key=value`. Unknown keys and
invalid values raise `UserInputError` naming the key, so a typo never silently does nothing.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autolfads.errors import UserInputError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


AUTO_TEST_MIN_TRIALS = 100  # a default test set only from this many trials (10 test trials)


class DataConfig(_Section):
    variable: str = "data"  # name of the spike-count variable in .mat / .npz files
    layout: str = "auto"  # axis order of that variable, e.g. neurons_time_trials; auto = per format
    split: Literal["every_nth", "random"] = "every_nth"
    valid_every: int = Field(5, ge=2)  # every_nth: trials 5, 10, 15, ... (1-based) are validation
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # random split
    split_seed: int = Field(0, ge=0)
    # Test trials: held out from training, early stopping and PBT selection; the metrics are
    # reported on them. every_nth: 1-based trials 1, 1 + test_every, ... (those not already
    # validation trials); random: a seeded test_fraction. None = auto: a test set of ~10% when the
    # data has at least AUTO_TEST_MIN_TRIALS trials, none otherwise; 0 = no test set.
    test_every: int | None = Field(None, ge=0)
    test_fraction: float | None = Field(None, ge=0.0, lt=0.5)
    bin_size_ms: float | None = Field(None, gt=0)  # bin width, when the file does not say
    # Calcium dF/F traces: deconvolve them into events first (data/deconvolve.py, OASIS), which
    # `auto` then models as zero_inflated_gamma. Decay time constant None: estimated per neuron.
    # Held-out neurons and forward prediction (the Neural Latents Benchmark's co-bps / fp-bps):
    # the encoders never see the held-out neurons or the last forward_bins bins; the model
    # reconstructs every neuron over every bin. heldout_neurons: 0-based indices; or
    # heldout_fraction: a seeded choice of that fraction of the neurons.
    heldout_neurons: list[int] | None = None
    heldout_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    forward_bins: int = Field(0, ge=0)
    # NWB files (data/nwb.py): trials cut around the trials-table column `align`, over
    # window_ms = [start, stop] (default: 0 to the shortest trial); optional trials column as
    # conditions and a time series (e.g. hand_vel) as decode targets.
    align: str = "start_time"
    window_ms: list[float] | None = None
    condition: str | None = None
    behavior: str | None = None
    # NWB: keep the units whose units-table column holds one of these values, e.g. "quality=good"
    # or "KSLabel=good,mua" (None: every unit).
    units: str | None = None
    # NWB: a time series to bin as the data instead of the units' spikes (calcium dF/F such as
    # ophys/DfOverF/RoiResponseSeries, EMG): each bin holds the mean of its samples.
    signal: str | None = None
    # NWB: the intervals table whose rows are the trials (trials, epochs, or another one).
    intervals: str = "trials"
    # A continuous recording (a 2-D array, or an NWB file without a trials table): cut into
    # segments of segment_bins bins (None: 100) that overlap by segment_overlap bins (None: a
    # fifth), trained as trials; the outputs are also merged back into one recording.
    segment_bins: int | None = Field(None, ge=1)
    segment_overlap: int | None = Field(None, ge=0)
    deconvolve: bool = False
    tau_decay_s: float | None = Field(None, gt=0)
    event_threshold_sd: float = Field(1.0, ge=0)  # events below this many noise SDs become 0


class ModelConfig(_Section):
    """LFADS sizes, named as in the original LFADS code."""

    ic_enc_dim: int = Field(64, ge=1)  # IC encoder GRU units (each direction)
    ci_enc_dim: int = Field(64, ge=1)  # controller-input encoder GRU units (each direction)
    ci_lag: int = Field(1, ge=0)  # controller sees encoded inputs this many steps back/ahead
    con_dim: int = Field(64, ge=1)  # controller GRU units
    co_dim: int = Field(4, ge=0)  # inferred-input dimensions; 0 switches the controller off
    ic_dim: int = Field(64, ge=1)  # initial-condition latent dimensions
    gen_dim: int = Field(64, ge=1)  # generator GRU units
    fac_dim: int = Field(40, ge=1)  # latent factors
    # Regularisation defaults from the sweep in bench/defaults_sweep.md (issue 14): the public
    # implementation's published values won or tied on every system; our old ones (dropout 0.05,
    # KL 1e-4, L2 1e-3, 50-epoch ramps) lost on all, on the hardest below smoothing.
    dropout_rate: float = Field(0.3, ge=0.0, lt=1.0)
    cd_rate: float = Field(0.3, ge=0.0, lt=1.0)  # coordinated dropout: fraction of inputs masked
    sv_rate: float = Field(0.0, ge=0.0, lt=1.0)  # sample validation: fraction of entries held out
    cell_clip: float = Field(5.0, gt=0.0)  # generator/controller hidden-state clip
    ic_prior_var: float = Field(0.1, gt=0.0)
    ic_post_var_min: float = Field(1e-4, gt=0.0)
    co_prior_tau: float = Field(10.0, gt=0.0)  # AR(1) prior time constant, in bins (learned)
    co_prior_nvar: float = Field(0.1, gt=0.0)  # AR(1) prior innovation variance (learned)
    fused: bool = True  # fast hand-written recurrences (model/fused/); false: the plain form
    # How the data are distributed given the factors (model/observations/): auto picks from the
    # values (counts -> poisson, positive -> gamma, mostly zeros -> zero_inflated_gamma, signed ->
    # gaussian) and says why; a run records its choice in config.yaml.
    observation: Literal["auto", "poisson", "gamma", "zero_inflated_gamma", "gaussian"] = "auto"


class TrainConfig(_Section):
    epochs: int = Field(400, ge=1)
    batch_size: int = Field(200, ge=1)
    lr: float = Field(4e-3, gt=0.0)
    adam_eps: float = Field(1e-8, gt=0.0)
    grad_clip: float = Field(200.0, gt=0.0)
    loss_scale: float = Field(1e4, gt=0.0)
    # KL and L2 weights per entry of the reconstruction cost (model/objective.py says how that
    # converts to other implementations); 1/(T*N) would be the plain ELBO.
    kl_ic_scale: float = Field(1e-7, ge=0.0)
    kl_co_scale: float = Field(1e-7, ge=0.0)
    l2_gen_scale: float = Field(0.0, ge=0.0)
    l2_con_scale: float = Field(0.0, ge=0.0)
    kl_start_epoch: int = Field(0, ge=0)
    kl_increase_epochs: int = Field(80, ge=0)  # linear ramp of the KL weight from 0 to 1
    l2_start_epoch: int = Field(0, ge=0)
    l2_increase_epochs: int = Field(80, ge=0)
    smoothing: float = Field(0.7, ge=0.0, lt=1.0)  # EMA weight on the old smoothed valid cost
    patience: int = Field(50, ge=1)  # epochs without smoothed-valid improvement before stopping
    n_samples: int = Field(50, ge=1, le=10_000)  # posterior samples averaged for the outputs
    seed: int = Field(0, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")  # auto | cpu | cuda | cuda:N
    threads: int = Field(0, ge=0)  # CPU threads for this model; 0 = all cores
    # CPU: the GRU cell as one compiled kernel per step (model/fused/native), built once with
    # the machine's C++ compiler; ~10% faster steps; without a compiler, a warning and the
    # usual loops.
    native_cells: bool = False
    # DIR/report/index.html written when the run ends and, for `run`, after every generation
    # (seconds of figures each); false: only `autolfads report DIR` writes it.
    report: bool = True


# The hyperparameters PBT tunes, each with the config section it lives in: the search space
# (pbt/search_space.py) may only name these, and the Trainer sets them between generations.
TUNABLE: dict[str, str] = {
    "lr": "train",
    "dropout_rate": "model",
    "cd_rate": "model",
    "kl_ic_scale": "train",
    "kl_co_scale": "train",
    "l2_gen_scale": "train",
    "l2_con_scale": "train",
}


class HPOverride(_Section):
    """Changes to one hyperparameter of the PBT search space (pbt/search_space.py)."""

    low: float | None = None
    high: float | None = None
    init: Literal["uniform", "log_uniform", "fixed"] | None = None
    value: float | None = None  # the start value when init is "fixed"
    explore_weight: float | None = Field(None, ge=0.0, lt=1.0)  # 0 = never perturbed
    enforce_limits: bool | None = None


class PBTConfig(_Section):
    population: int = Field(10, ge=2)
    generations: int = Field(30, ge=1)  # maximum number of generations
    epochs_per_generation: int = Field(25, ge=1)
    stop_generations: int = Field(4, ge=1)  # improvement is measured over this many generations
    stop_min_improvement: float = Field(5e-4, ge=0.0)  # relative; 5e-4 = 0.05%
    seed: int = Field(0, ge=0)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    workers_per_gpu: int = Field(0, ge=0)  # 0 = CPU workers; N = each worker takes 1/N of a GPU
    # Restarts of a failed worker (from its last generation) before it is dropped; -1: no limit.
    # Sized for spot VMs, which a long run can lose many times; a worker that crashes the same way
    # every time still stops after this many (restarts back off to a minute each: callbacks.py).
    max_failures: int = Field(20, ge=-1)
    search_space: dict[str, HPOverride] = Field(default_factory=dict)


class ClusterConfig(_Section):
    """Where `autolfads run` finds its Ray cluster (--address wins); the cluster itself comes
    from `autolfads cloud init` (its own YAML, for Ray's launcher)."""

    address: str | None = None  # None: a private local Ray on this machine


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    pbt: PBTConfig = PBTConfig()
    cluster: ClusterConfig = ClusterConfig()


def _describe(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown config key '{where}'{_did_you_mean(first['loc'])}"
    return f"{origin}: invalid value for '{where}': {first['msg']}"


def _did_you_mean(loc: tuple) -> str:
    """'; did you mean model.gen_dim?' for a misspelt key, or the section's keys."""
    import difflib

    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(
                field.annotation, BaseModel):
            return ""
        model = field.annotation
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    prefix = ".".join(str(p) for p in loc[:-1])
    if close:
        return f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?"
    return f"; known keys{' of ' + prefix if prefix else ''}: {', '.join(names)}"


def _parse_value(text: str) -> Any:
    # YAML gives numbers, booleans and null the way a user types them: 1e-3, true, null.
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply `section.key=value` strings (deeper keys too, e.g. pbt.search_space.lr.low=1e-4)
    to a nested dict (validated later, all at once)."""
    for item in overrides or []:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise UserInputError(f"--set {item}: expected section.key=value, e.g. train.lr=0.002")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.setdefault(part, {}), dict):
                where = ".".join(parts[: depth + 1])
                raise UserInputError(f"--set {item}: '{where}' is a value, not a config section")
            node = node[part]
        node[parts[-1]] = _parse_value(value.strip())
    return raw


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error: YAML keeps the
    last one in silence, so a second `model:` section would undo the first."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # a list or map as a key: YAML's own error
                break
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then `--set` overrides; validated as a whole."""
    raw: dict = {}
    origin = "--set"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserInputError(f"{p}: config file not found")
        try:
            raw = yaml.load(p.read_text(), Loader=_UniqueKeys) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
            raise UserInputError(f"{p}: not valid YAML ({first}{where})") from None
        except (UnicodeDecodeError, OSError):
            raise UserInputError(f"{p}: cannot be read as a YAML text file; --config takes a "
                                 "YAML file with sections data, model, train, pbt") from None
        if not isinstance(raw, dict):
            raise UserInputError(f"{p}: expected a mapping with sections data, model, train")
        origin = str(p)
    raw = apply_overrides(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        where = origin if not overrides or origin == "--set" else f"{origin} / --set"
        raise UserInputError(_describe(e, where)) from None


def config_to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
