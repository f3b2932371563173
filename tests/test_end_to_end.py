"""`autolfads synth` + `autolfads train` on the command line; outputs read back as a user would."""

import json
import sys

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from conftest import TINY_MODEL
from test_cli import run_cli

TINY_SET = [arg for k, v in TINY_MODEL.items() for arg in ("--set", f"model.{k}={v}")]


def test_train_writes_the_output_contract(tmp_path, monkeypatch, capsys):
    data = tmp_path / "lorenz.mat"
    code, out, err = run_cli(monkeypatch, capsys, "synth", "lorenz", "--out", data, "--seed", "1")
    assert code == 0, err
    run = tmp_path / "run"
    code, out, err = run_cli(monkeypatch, capsys, "train", data, "--out", run, "--epochs", "2",
                             "--set", "train.n_samples=3", *TINY_SET)
    assert code == 0, err
    assert "epoch    1/2" in err and "R^2 vs true rates" in err  # progress and summary

    src = scipy.io.loadmat(data)
    n_neurons, n_time, n_trials = src["data"].shape
    mat = scipy.io.loadmat(run / "output" / "lfads_output.mat")
    assert mat["rates"].shape == (n_neurons, n_time, n_trials)
    assert mat["factors"].shape == (TINY_MODEL["fac_dim"], n_time, n_trials)
    assert mat["inferred_inputs"].shape == (TINY_MODEL["co_dim"], n_time, n_trials)
    tr, va, te = (mat[f"{sp}_inds"].ravel() for sp in ("train", "valid", "test"))
    assert tr.min() >= 1 and va.min() >= 1 and te.min() >= 1  # MATLAB indices
    assert len(te) == n_trials // 10  # a test set by default on data this size
    assert sorted(np.concatenate([tr, va, te]).astype(int)) == list(range(1, n_trials + 1))

    with h5py.File(run / "output" / "lfads_output.h5") as f:
        h5_rates = f["rates"][()]
        valid_rates, valid_inds = f["valid_rates"][()], f["valid_inds"][()]
        for key in ("train_factors", "valid_inferred_inputs", "train_ic_mean", "train_inds"):
            assert key in f
    # Same numbers in both files, and each split's trial sits at its original position.
    assert np.allclose(np.transpose(mat["rates"], (2, 1, 0)), h5_rates, rtol=1e-5)
    assert np.allclose(h5_rates[valid_inds], valid_rates)
    assert np.array_equal(np.sort(valid_inds + 1), np.sort(va.astype(int)))

    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("valid_recon", "bps", "bps_test", "r2_rates", "r2_rates_test", "r2_smoothing",
                "wall_s", "epochs", "nll_per_bin_test"):
        assert np.isfinite(metrics[key]), key
    assert metrics["headline_split"] == "test" and metrics["bps"] == metrics["bps_test"]
    assert "(test trials)" in err and metrics["split_unit"] == "trials"
    lines = err.splitlines()  # progress: sampling, then writing and scoring, then the summary
    assert lines.index(next(ln for ln in lines if ln.startswith("writing the outputs"))) == \
        lines.index(next(ln for ln in lines if ln.startswith("posterior sample-and-average"))) + 1
    assert metrics["epochs"] == 2
    assert "gen_dim: 16" in (run / "config.yaml").read_text()
    ck = torch.load(run / "model" / "checkpoint.pt", weights_only=True)
    assert ck["state"]["epoch"] == 2
    assert (run / "train_log.csv").read_text().count("\n") == 3


@pytest.mark.slow
def test_default_training_on_builtin_lorenz_beats_smoothing(tmp_path, monkeypatch, capsys):
    """The foundation's promise: R^2 >= 0.85 against the true rates with default settings, read
    from the .mat output the way the tutorial's compare_rates.m does."""
    data = tmp_path / "lorenz.mat"
    run_cli(monkeypatch, capsys, "synth", "lorenz", "--out", data)
    run = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "train", data, "--out", run, "--epochs", "30")
    assert code == 0, err
    sys.stderr.write(err.splitlines()[-1] + "\n")
    truth = scipy.io.loadmat(data)["truth"]
    rates = scipy.io.loadmat(run / "output" / "lfads_output.mat")["rates"]
    r2 = np.corrcoef(rates.ravel(), truth.ravel())[0, 1] ** 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert r2 >= 0.85
    assert abs(r2 - metrics["r2_rates"]) < 1e-6
    assert metrics["r2_rates"] > metrics["r2_smoothing"]
    # Trial order: each inferred trial matches its own true trial better than one of another
    # condition (trials are stored condition by condition, so half the file away differs).
    n = truth.shape[2]
    own = np.mean([np.corrcoef(rates[..., k].ravel(), truth[..., k].ravel())[0, 1]
                   for k in range(0, n, 37)])
    other = np.mean([np.corrcoef(rates[..., k].ravel(), truth[..., (k + n // 2) % n].ravel())[0, 1]
                     for k in range(0, n, 37)])
    assert own > other + 0.2


def test_api_functions_are_not_shadowed_by_subpackages():
    """`autolfads.train` stays the API function after the package internals are imported."""
    import autolfads
    import autolfads.api  # noqa: F401  (imports the training internals)
    import autolfads.pbt.runner  # noqa: F401

    for name in ("train", "run", "load", "synth"):
        assert callable(getattr(autolfads, name)), name
