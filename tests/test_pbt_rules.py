"""The AutoLFADS rules with fixed seeds: exploit (tournament), explore (perturb), stop."""

import math

import numpy as np
import pytest

from autolfads.config import TUNABLE, Config, load_config
from autolfads.errors import UserInputError
from autolfads.pbt.scheduler import tournament
from autolfads.pbt.search_space import (
    DEFAULT_SPACE,
    MIN_PERTURB,
    build_space,
    default_space,
    is_perturbation_of,
    perturb,
    sample_initial,
)
from autolfads.pbt.stop_rule import improvement, improvement_stop, stopped_at
from autolfads.pbt.stopper import PBTStopper


def test_tournament_who_copies_whom():
    scores = {0: 1.0, 1: 2.0, 2: 3.0, 3: math.nan}
    rng = np.random.default_rng(0)
    met = {w: set() for w in scores}
    for _ in range(200):
        picks = tournament(scores, rng)
        assert picks[0] is None  # the best never copies
        assert picks[3] in (0, 1, 2)  # NaN always copies, never from another NaN
        for w, s in picks.items():
            assert s is None or (s != w and (scores[s] < scores[w] or math.isnan(scores[w])))
            met[w].add(s)
    # The worst finite worker copies whoever it meets unless that is the NaN worker.
    assert met[2] == {0, 1, None}
    assert met[1] == {0, None}
    # Who meets whom is random but seeded.
    assert tournament(scores, np.random.default_rng(5)) == tournament(scores,
                                                                      np.random.default_rng(5))


def test_tournament_fixed_seed_decisions():
    scores = {0: 0.30, 1: 0.10, 2: 0.20, 3: 0.40}
    picks = tournament(scores, np.random.default_rng(1))
    again = tournament(scores, np.random.default_rng(1))
    assert picks == again
    assert picks[1] is None  # the best worker keeps its state
    # Ties are not strictly better: nobody copies.
    assert set(tournament({0: 1.0, 1: 1.0, 2: 1.0}, np.random.default_rng(0)).values()) == {None}
    # All diverged: nobody to copy from.
    assert tournament({0: math.nan, 1: math.nan}, np.random.default_rng(0)) == {0: None, 1: None}


def test_perturbed_values_stay_in_enforced_limits():
    space = default_space()
    rng = np.random.default_rng(3)
    # Start right at the limits: every redraw must still land inside them.
    edge = {"lr": 5e-3, "dropout_rate": 0.6, "cd_rate": 0.01, "kl_ic_scale": 1e-4,
            "kl_co_scale": 1e-7, "l2_gen_scale": 1.0, "l2_con_scale": 1e-4}
    moved_outside = set()
    for _ in range(300):
        new = perturb(edge, space, rng)
        assert is_perturbation_of(new, edge, space)
        for name, hp in space.items():
            ratio = new[name] / edge[name]
            assert 1 - hp.explore_weight - 1e-12 <= ratio <= 1 + hp.explore_weight + 1e-12
            assert abs(ratio - 1) >= MIN_PERTURB - 1e-12
            if hp.enforce_limits:
                assert hp.low <= new[name] <= hp.high, name
            elif not hp.low <= new[name] <= hp.high:
                moved_outside.add(name)
    assert new["lr"] < 5e-3 and new["cd_rate"] > 0.01
    # Regularisation weights are not bound to their initial range (as published).
    assert moved_outside == {"kl_ic_scale", "kl_co_scale", "l2_gen_scale", "l2_con_scale"}


def test_perturb_is_seeded_and_respects_zero_weight():
    cfg = load_config(None, ["pbt.search_space.lr.explore_weight=0"])
    space = build_space(cfg.pbt.search_space)
    hp = sample_initial(space, 1, np.random.default_rng(0))[0]
    a = perturb(hp, space, np.random.default_rng(9))
    assert a == perturb(hp, space, np.random.default_rng(9))
    assert a["lr"] == hp["lr"] == 4e-3
    assert a["kl_ic_scale"] != hp["kl_ic_scale"]
    assert not is_perturbation_of({**a, "lr": 5e-3}, hp, space)
    assert not is_perturbation_of({**a, "cd_rate": hp["cd_rate"] * 1.5}, hp, space)


def test_initial_sampling_follows_the_space():
    space = default_space()
    pop = sample_initial(space, 200, np.random.default_rng(0))
    assert all(p["lr"] == 4e-3 for p in pop)
    for name, hp in space.items():
        vals = np.array([p[name] for p in pop])
        assert vals.min() >= hp.low and vals.max() <= hp.high
    # log-uniform: about half the draws below the geometric midpoint of 1e-4 .. 1.
    below = np.mean([p["l2_gen_scale"] < 1e-2 for p in pop])
    assert 0.4 < below < 0.6
    dropout = np.array([p["dropout_rate"] for p in pop])
    assert 0.2 < dropout.mean() < 0.4  # uniform on 0 .. 0.6


def test_search_space_overrides_and_errors():
    cfg = load_config(None, ["pbt.search_space.cd_rate.init=fixed",
                             "pbt.search_space.cd_rate.value=0.3",
                             "pbt.search_space.kl_ic_scale.high=1e-2"])
    space = build_space(cfg.pbt.search_space)
    assert space["cd_rate"].init == "fixed" and space["cd_rate"].value == 0.3
    assert space["kl_ic_scale"].high == 1e-2 and space["kl_ic_scale"].low == 1e-7
    bad = [
        (["pbt.search_space.momentum.low=0.1"], "unknown hyperparameter 'momentum'"),
        (["pbt.search_space.lr.low=1", "pbt.search_space.lr.high=0.1"], "must not exceed"),
        (["pbt.search_space.dropout_rate.init=log_uniform"], "log_uniform needs low > 0"),
        (["pbt.search_space.cd_rate.init=fixed"], "needs a value"),
        (["pbt.search_space.lr.value=0.5"], "outside"),
        # values the model cannot take would fail every worker that draws them
        (["pbt.search_space.dropout_rate.high=1.5"],
         "dropout_rate.high 1.5: model.dropout_rate must be less than 1"),
        (["pbt.search_space.lr.low=-1"], "lr.low -1: train.lr must be greater than 0"),
        (["pbt.search_space.cd_rate.enforce_limits=false"],
         "enforce_limits false lets explore move cd_rate past what it can take"),
    ]
    for overrides, message in bad:
        with pytest.raises(UserInputError, match=message):
            build_space(load_config(None, overrides).pbt.search_space)


def test_search_space_names_only_the_tunable_hyperparameters():
    assert list(default_space()) == list(TUNABLE) and set(DEFAULT_SPACE) == set(TUNABLE)
    cfg = Config()
    for name, section in TUNABLE.items():  # the Trainer sets each one where it lives
        assert isinstance(getattr(getattr(cfg, section), name), float), name
    with pytest.raises(UserInputError) as e:
        build_space(load_config(None, ["pbt.search_space.foo.low=1"]).pbt.search_space)
    msg = str(e.value)
    assert msg.startswith("pbt.search_space.foo: unknown hyperparameter 'foo'") and "\n" not in msg
    assert all(name in msg for name in TUNABLE)


def test_improvement_ratio_stop():
    improving = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert not any(improvement_stop(improving[:n], 4, 5e-4) for n in range(1, 8))
    plateau = [1.0, 0.9, 0.8] + [0.79999] * 4
    assert not improvement_stop(plateau[:6], 4, 5e-4)  # the window still holds an improvement
    assert improvement_stop(plateau, 4, 5e-4)  # 4 generations improved 0.00125% < 0.05%
    # A worse generation after a good one does not reset the plateau: the running best counts.
    assert improvement_stop([1.0, 0.5, 0.6, 0.7, 0.8, 0.9], 4, 5e-4)
    assert not improvement_stop([1.0, math.nan, 0.9, 0.9, 0.9], 4, 5e-4)


def test_pure_stop_rule_agrees_with_the_ray_stopper():
    runs = [[1.0, 0.8, 0.7, 0.6, 0.5999, 0.5998], [math.nan] * 6, [math.nan, 1.0, 0.9, 0.9, 0.9],
            [1.0, 0.5, 0.6, 0.7, 0.8, 0.9], [1.0, 0.9]]
    for bests in runs:
        s = PBTStopper(max_generations=5, window=2, min_improvement=0.01)
        for g, b in enumerate(bests, start=1):
            s.record(g, b)
            assert s.progress() == (improvement(bests[:g], 2), g)
            assert bool(s.stopped_reason) == bool(stopped_at(bests[:g], 5, 2, 0.01))
    assert stopped_at([1.0, 0.9], 5, 2, 0.01) is None
    assert "maximum of 2" in stopped_at([1.0, 0.9, 0.8], 2, 2, 0.01)


def test_stopper_reasons_and_ray_interface():
    s = PBTStopper(max_generations=10, window=2, min_improvement=0.01)
    for g, best in enumerate([1.0, 0.8, 0.7, 0.6], start=1):
        assert s.record(g, best) is None and not s.stop_all()
    assert s.progress() == (pytest.approx(0.25), 4)
    assert s.record(5, 0.5999) is None  # 0.7 -> 0.5999 over the window: still improving
    assert "less than 1%" in s.record(6, 0.5998)  # 0.6 -> 0.5998: a plateau
    assert s.stop_all() and not s("trial", {"score": 0.1})
    capped = PBTStopper(max_generations=2)
    assert capped.record(1, 1.0) is None
    assert "maximum of 2 generations" in capped.record(2, 0.5)
    with pytest.raises(ValueError):
        capped.record(5, 0.1)
