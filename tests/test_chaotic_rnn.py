"""The built-in chaotic-RNN dataset: several settings, determinism, pulse effect, chaos, files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli

import autolfads
from autolfads.data.chaotic_rnn import (
    PULSE_BINS,
    draw_network,
    input_edge,
    make_chaotic_rnn,
    simulate,
)
from autolfads.data.io import load_dataset
from autolfads.errors import UserInputError

SETTINGS = [  # small enough to run in well under a second each
    {"gain": 1.2, "units": 30, "neurons": 20, "trials": 40, "bins": 30},
    {"gain": 1.5, "units": 50, "neurons": 50, "trials": 60, "bins": 100},
    {"gain": 2.0, "units": 120, "neurons": 15, "trials": 30, "bins": 50, "pulse": 2.0},
    {"gain": 2.5, "units": 20, "neurons": 80, "trials": 2, "bins": 10, "pulse": 10.0},
]


@pytest.mark.parametrize("params", SETTINGS)
def test_shapes_counts_rates_and_input_times(params: dict) -> None:
    d = make_chaotic_rnn(seed=3, **params)
    k, t, n = params["trials"], params["bins"], params["neurons"]
    assert d.spikes.shape == d.rates.shape == (k, t, n)
    assert d.states.shape == (k, t, params["units"])
    assert d.spikes.dtype == np.float32 and d.rates.dtype == np.float32
    assert (d.spikes >= 0).all() and (d.spikes == np.round(d.spikes)).all()
    assert np.isfinite(d.rates).all() and (d.rates > 0).all()
    assert d.rates.mean() / d.bin_size_s == pytest.approx(20.0, rel=1e-3)
    assert d.rates.max() / d.bin_size_s < 2000
    edge = input_edge(t)
    assert edge >= 2
    assert d.input_times.shape == (k,) and d.input_times.dtype == np.int64
    assert (d.input_times >= edge).all() and (d.input_times < t - edge).all()


@pytest.mark.parametrize("params", SETTINGS[:3])
def test_deterministic_per_seed_and_seeds_differ(params: dict) -> None:
    a, b = make_chaotic_rnn(seed=5, **params), make_chaotic_rnn(seed=5, **params)
    for name in ("spikes", "rates", "states", "input_times"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = make_chaotic_rnn(seed=6, **params)
    assert not np.allclose(a.rates, c.rates)
    assert not np.array_equal(a.spikes, c.spikes)
    assert not np.array_equal(a.input_times, c.input_times)


def test_input_times_spread_over_the_allowed_window() -> None:
    d = make_chaotic_rnn(seed=0, trials=400, bins=100, units=20, neurons=5)
    assert d.input_times.min() <= 30 and d.input_times.max() >= 70


@pytest.mark.parametrize("params", SETTINGS[:3])
def test_pulse_deflects_the_trajectory(params: dict) -> None:
    params = {**params, "pulse": params.get("pulse", 5.0)}
    d = make_chaotic_rnn(seed=1, **params)
    control = make_chaotic_rnn(seed=1, **{**params, "pulse": 0.0})
    np.testing.assert_array_equal(d.input_times, control.input_times)  # same trial stream
    rows = np.arange(len(d.input_times))
    before = np.abs(d.states[rows, d.input_times] - control.states[rows, d.input_times])
    assert before.max() < 1e-6  # identical up to the pulse onset
    after_bin = d.input_times + PULSE_BINS
    dx = np.abs(d.states[rows, after_bin] - control.states[rows, after_bin]).mean()
    assert dx > 0.05
    # Rates: the change just after the pulse dwarfs the change (a rescaling only) just before.
    change = np.abs(d.rates / control.rates - 1).mean(axis=2)
    assert change[rows, after_bin].mean() > 5 * change[rows, d.input_times].mean()


def _divergence(units: int, gain: float, seed: int = 0, bins: int = 300) -> float:
    """Median growth of a 1e-6 perturbation of the initial state over `bins` bins, no input."""
    rng = np.random.default_rng(seed)
    j, b, _ = draw_network(rng, units, 1)
    x0 = rng.normal(size=(10, units))
    x1 = x0 + 1e-6 * rng.normal(size=x0.shape) / math.sqrt(units)
    on = np.zeros(10, dtype=np.int64)
    s0, s1 = simulate(j, b, x0, on, 0.0, bins, gain), simulate(j, b, x1, on, 0.0, bins, gain)
    d = np.linalg.norm(s0 - s1, axis=2)
    return float(np.median(d[:, -1] / d[:, 0]))


@pytest.mark.parametrize("seed", [0, 1])
def test_chaos_nearby_states_diverge_above_gain_one(seed: int) -> None:
    assert _divergence(200, 2.5, seed) > 1e3  # chaotic: exponential separation
    assert _divergence(200, 0.8, seed) < 1e-3  # below 1: every trajectory decays to rest


def test_defaults_trials_differ_strongly() -> None:
    d = make_chaotic_rnn(seed=0, trials=100)
    assert d.spikes.shape == (100, 100, 50)
    # Different initial states: the true rates of different trials differ a lot at every bin.
    rel_sd = d.rates.std(axis=0).mean() / d.rates.mean()
    assert rel_sd > 0.25


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"gain": 0.0}, ["--gain"]),
        ({"gain": -1.0}, ["--gain"]),
        ({"bins": 9}, ["--bins", "10"]),
        ({"trials": 1}, ["--trials", "2"]),
        ({"units": 1}, ["--units"]),
        ({"neurons": 0}, ["--neurons"]),
        ({"pulse": -1.0}, ["--pulse"]),
        ({"pulse": math.nan}, ["--pulse"]),
    ],
)
def test_bad_parameters_are_one_line_errors(params: dict, words: list[str]) -> None:
    with pytest.raises(UserInputError) as e:
        make_chaotic_rnn(**params)
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_api_synth_kinds_and_roundtrip(tmp_path) -> None:
    with pytest.raises(UserInputError, match="lorenz, chaotic_rnn"):
        autolfads.synth("nope")
    with pytest.raises(UserInputError, match="colour"):
        autolfads.synth("chaotic_rnn", colour=1)
    path = tmp_path / "c.mat"
    ds = autolfads.synth("chaotic_rnn", seed=2, out=path, trials=20, bins=20, neurons=7)
    back = load_dataset(path)
    np.testing.assert_array_equal(back.true_input_times, ds.true_input_times)
    np.testing.assert_allclose(back.all_truth(), ds.all_truth(), rtol=1e-6)
    np.testing.assert_array_equal(back.all_data(), ds.all_data())


@pytest.mark.parametrize("fmt", ["h5", "mat"])
def test_cli_writes_a_file_that_reads_back(tmp_path, monkeypatch, capsys, fmt) -> None:
    out = tmp_path / f"crnn.{fmt}"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "synth", "chaotic_rnn", "--out", out, "--seed", "4", "--units", "40",
        "--gain", "1.8", "--pulse", "3", "--neurons", "12", "--trials", "25", "--bins", "40",
    )
    assert code == 0, err
    assert "input times" in stdout
    d = make_chaotic_rnn(seed=4, units=40, gain=1.8, pulse=3.0, neurons=12, trials=25, bins=40)
    back = autolfads.load(out)
    assert back.n_trials == 25 and back.n_time == 40 and back.n_neurons == 12
    np.testing.assert_array_equal(back.true_input_times, d.input_times)
    np.testing.assert_allclose(back.all_truth(), d.rates, rtol=1e-6)
    np.testing.assert_array_equal(back.all_data(), d.spikes)
    assert back.bin_size_s == pytest.approx(0.01)


def test_cli_bad_parameter_and_existing_file(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "x.h5"
    code, _, err = run_cli(monkeypatch, capsys, "synth", "chaotic_rnn", "--out", out,
                           "--gain", "-2")
    assert code == 2 and err.count("\n") == 1 and "--gain" in err
    assert not out.exists()
    out.write_bytes(b"")
    code, _, err = run_cli(monkeypatch, capsys, "synth", "chaotic_rnn", "--out", out)
    assert code == 2 and "exists" in err


def test_run_outputs_carry_true_input_times(tmp_path) -> None:
    import h5py
    import scipy.io

    from autolfads.data.chaotic_rnn import chaotic_rnn_dataset
    from autolfads.data.io import write_outputs
    from autolfads.rundir.location import Location
    from autolfads.rundir.outputs import read_outputs

    ds = chaotic_rnn_dataset(seed=0, trials=12, bins=16, neurons=5, units=10)
    post = {}
    for split, data in (("train", ds.train_data), ("valid", ds.valid_data)):
        post[f"{split}_rates"] = data + 0.5
        post[f"{split}_factors"] = np.zeros((len(data), ds.n_time, 2), np.float32)
        post[f"{split}_inferred_inputs"] = np.zeros((len(data), ds.n_time, 1), np.float32)
        post[f"{split}_ic_mean"] = np.zeros((len(data), 3), np.float32)
    paths = write_outputs(tmp_path / "run", ds, post)
    with h5py.File(paths["h5"], "r") as f:
        np.testing.assert_array_equal(f["true_input_times"][()], ds.true_input_times)
    m = scipy.io.loadmat(paths["mat"])
    np.testing.assert_array_equal(m["true_input_times"].ravel(), ds.true_input_times + 1)
    paths["h5"].unlink()  # the .mat alone reads back 0-based
    back = read_outputs(Location(tmp_path / "run"))
    np.testing.assert_array_equal(back.arrays["true_input_times"], ds.true_input_times)


@pytest.mark.live_report
def test_synth_then_train_reports_input_timing(tmp_path, monkeypatch, capsys) -> None:
    """The file `synth chaotic_rnn` writes trains as it is; the run's metrics, summary line and
    report carry the inferred-input timing against the file's true input times."""
    import json

    data, run = tmp_path / "crnn.mat", tmp_path / "run"
    code, _, _ = run_cli(monkeypatch, capsys, "synth", "chaotic_rnn", "--out", data,
                         "--trials", "20", "--bins", "24", "--neurons", "8", "--units", "12")
    assert code == 0
    code, _, err = run_cli(monkeypatch, capsys, "train", data, "--out", run, "--epochs", "2",
                           "--set", "model.gen_dim=8", "--set", "model.fac_dim=4",
                           "--set", "model.con_dim=8", "--set", "model.ic_enc_dim=8",
                           "--set", "model.ci_enc_dim=8", "--set", "model.ic_dim=4",
                           "--set", "train.n_samples=2")
    assert code == 0, err
    m = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= m["input_time_accuracy"] <= 1.0 and 0.0 <= m["input_time_accuracy_valid"] <= 1.0
    assert f"{100 * m['input_time_accuracy']:.0f}% of trials" in err
    page = (run / "report" / "index.html").read_text()
    assert "true input time" in page and "peaks within 3 bins" in page


def test_cli_defaults_are_the_generators() -> None:
    """The CLI keeps its imports light, so it repeats the defaults: they must not drift."""
    import typer.main

    from autolfads.cli import synth_app
    from autolfads.data.chaotic_rnn import DEFAULTS

    cmd = typer.main.get_command(synth_app).commands["chaotic_rnn"]
    shown = {p.name: p.default for p in cmd.params if p.name in DEFAULTS}
    assert shown == DEFAULTS
