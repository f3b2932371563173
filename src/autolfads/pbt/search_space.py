"""The AutoLFADS search space: which hyperparameters PBT tunes, where they start, how they move.

The default space: the published one (Keshtkaran et al. 2022; DESIGN.md §5) with both KL ranges
one decade lower (issue 14, bench/defaults_sweep.md: single models with KL weights of 1e-4 lost
on every system we tried, up to worse than smoothing; 1e-7 .. 1e-6 won, and PBT runs drifted
down to 1e-7 .. 2e-6 from the published start, spending generations on the way):

    name           limits         initial value          explore weight w   limits enforced
    lr             1e-5 .. 5e-3   4e-3 (fixed)           0.3                yes
    dropout_rate   0 .. 0.6       uniform                0.3                yes
    cd_rate        0.01 .. 0.7    uniform                0.3                yes
    kl_ic_scale    1e-7 .. 1e-4   log-uniform            0.8                no
    kl_co_scale    1e-7 .. 1e-5   log-uniform            0.8                no
    l2_gen_scale   1e-4 .. 1      log-uniform            0.8                no
    l2_con_scale   1e-4 .. 1      log-uniform            0.8                no

(published: kl_ic_scale 1e-6 .. 1e-3, kl_co_scale 1e-6 .. 1e-4; set them back with
`--set pbt.search_space.kl_ic_scale.low=1e-6` etc.)

Explore multiplies a value by 1 + s * U(MIN_PERTURB, w) with a random sign s; where limits are
enforced the factor is redrawn until the value lands inside them. Rates and the learning rate are
bounded by nature; the regularisation weights may leave their initial range, as published.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import ValidationError

from autolfads.config import TUNABLE, HPOverride, ModelConfig, TrainConfig
from autolfads.errors import UserInputError

MIN_PERTURB = 0.01  # every explore moves a value by at least 1%
_REDRAWS = 100


@dataclass(frozen=True)
class HyperParam:
    low: float
    high: float
    init: Literal["uniform", "log_uniform", "fixed"]
    value: float | None = None  # the start value when init is "fixed"
    explore_weight: float = 0.3  # 0 = never perturbed
    enforce_limits: bool = True


# The start of the search (module docstring), for every hyperparameter in config.TUNABLE (a test
# checks that the two name the same ones).
DEFAULT_SPACE: dict[str, HyperParam] = {
    "lr": HyperParam(1e-5, 5e-3, "fixed", 4e-3, 0.3, True),
    "dropout_rate": HyperParam(0.0, 0.6, "uniform", None, 0.3, True),
    "cd_rate": HyperParam(0.01, 0.7, "uniform", None, 0.3, True),
    "kl_ic_scale": HyperParam(1e-7, 1e-4, "log_uniform", None, 0.8, False),
    "kl_co_scale": HyperParam(1e-7, 1e-5, "log_uniform", None, 0.8, False),
    "l2_gen_scale": HyperParam(1e-4, 1.0, "log_uniform", None, 0.8, False),
    "l2_con_scale": HyperParam(1e-4, 1.0, "log_uniform", None, 0.8, False),
}


def default_space() -> dict[str, HyperParam]:
    return {name: DEFAULT_SPACE[name] for name in TUNABLE}


def build_space(overrides: dict[str, HPOverride] | None) -> dict[str, HyperParam]:
    """The default space with the config file's / --set changes applied and checked."""
    space = default_space()
    for name, o in (overrides or {}).items():
        if name not in TUNABLE:
            raise UserInputError(f"pbt.search_space.{name}: unknown hyperparameter '{name}' "
                                 f"(tunable: {', '.join(TUNABLE)})")
        changes = {k: v for k, v in o.model_dump().items() if v is not None}
        if changes.get("init") == "fixed" and "value" not in changes and space[name].value is None:
            raise UserInputError(f"pbt.search_space.{name}: init 'fixed' needs a value")
        space[name] = dataclasses.replace(space[name], **changes)
        _check(name, space[name])
    return space


def _check(name: str, hp: HyperParam) -> None:
    where = f"pbt.search_space.{name}"
    if not (math.isfinite(hp.low) and math.isfinite(hp.high)) or hp.low > hp.high:
        raise UserInputError(f"{where}: low ({hp.low}) must not exceed high ({hp.high})")
    if hp.init == "log_uniform" and hp.low <= 0:
        raise UserInputError(f"{where}: log_uniform needs low > 0 (got {hp.low})")
    if hp.init == "fixed":
        if hp.value is None:
            raise UserInputError(f"{where}: init 'fixed' needs a value")
        if hp.enforce_limits and not hp.low <= hp.value <= hp.high:
            raise UserInputError(f"{where}: value {hp.value} is outside [{hp.low}, {hp.high}]")
    # A value the model cannot take would fail the worker that draws it, restart after restart.
    given = [("low", hp.low), ("high", hp.high)]
    given += [("value", hp.value)] if hp.value is not None else []
    for label, v in given:
        why = _invalid(name, v)
        if why:
            raise UserInputError(f"{where}.{label} {v:g}: {TUNABLE[name]}.{name} {why}")
    # (explore multiplies, unbounded: far above `high` is where an upper limit is met)
    if not hp.enforce_limits and hp.explore_weight > 0 and (why := _invalid(name, hp.high * 1e6)):
        raise UserInputError(f"{where}: enforce_limits false lets explore move {name} past "
                             f"what it can take ({why}); keep enforce_limits true")


def _invalid(name: str, value: float) -> str | None:
    """Why hyperparameter `name` cannot take `value` (its config field's limits), or None."""
    section = ModelConfig if TUNABLE[name] == "model" else TrainConfig
    try:
        section(**{name: value})
    except ValidationError as e:
        return e.errors()[0]["msg"].replace("Input should be", "must be")
    return None


def sample_initial(space: dict[str, HyperParam], n: int, rng: np.random.Generator
                   ) -> list[dict[str, float]]:
    """Starting hyperparameters of n workers."""
    def draw(hp: HyperParam) -> float:
        if hp.init == "fixed":
            return float(hp.value)  # type: ignore[arg-type]
        if hp.init == "log_uniform":
            return float(math.exp(rng.uniform(math.log(hp.low), math.log(hp.high))))
        return float(rng.uniform(hp.low, hp.high))

    return [{name: draw(hp) for name, hp in space.items()} for _ in range(n)]


def perturb(values: dict[str, float], space: dict[str, HyperParam], rng: np.random.Generator
            ) -> dict[str, float]:
    """Explore: each explorable value times 1 +- U(MIN_PERTURB, w), kept inside enforced limits."""
    out = dict(values)
    for name, hp in space.items():
        if hp.explore_weight <= 0 or name not in values:
            continue
        v = float(values[name])
        for _ in range(_REDRAWS):
            sign = 1.0 if rng.random() < 0.5 else -1.0
            new = v * (1.0 + sign * rng.uniform(MIN_PERTURB, max(hp.explore_weight, MIN_PERTURB)))
            if not hp.enforce_limits or hp.low <= new <= hp.high:
                break
        else:  # a value stuck at a limit of a very narrow range: stay inside regardless
            new = min(max(new, hp.low), hp.high)
        out[name] = new
    return out


def is_perturbation_of(new: dict[str, float], old: dict[str, float],
                       space: dict[str, HyperParam]) -> bool:
    """Could `perturb` have turned `old` into `new`? (Used to check the run logs.)"""
    for name, hp in space.items():
        a, b = float(old[name]), float(new[name])
        if hp.explore_weight <= 0 or a == 0.0:
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0):
                return False
            continue
        if hp.enforce_limits and not hp.low <= b <= hp.high:
            return False
        step = abs(b / a - 1.0)
        w = max(hp.explore_weight, MIN_PERTURB)
        at_limit = hp.enforce_limits and (b == hp.low or b == hp.high)
        if not (MIN_PERTURB - 1e-9 <= step <= w + 1e-9 or at_limit):
            return False
    return True
