"""Metrics: R^2 conventions, bits per spike, the smoothing baseline."""

from __future__ import annotations

import numpy as np
import pytest

from autolfads.analysis.metrics import (
    bits_per_spike,
    gaussian_smooth,
    r2_per_neuron,
    r2_per_neuron_vector,
    r2_rates,
    smoothing_baseline,
)
from autolfads.data.synthetic import lorenz_dataset


def test_r2_rates_known_values() -> None:
    truth = np.random.default_rng(0).gamma(2.0, size=(4, 5, 3))
    assert r2_rates(truth, truth) == pytest.approx(1.0)
    assert r2_rates(3 * truth + 1, truth) == pytest.approx(1.0)  # correlation ignores scale/offset
    assert r2_rates(-truth, truth) == pytest.approx(1.0)  # squared, as compare_rates.m
    # corr([1,2,3,4], [1,3,2,4]) = 4/5
    assert r2_rates(np.array([1, 3, 2, 4.0]), np.array([1, 2, 3, 4.0])) == pytest.approx(0.64)


def test_r2_per_neuron_known_values() -> None:
    truth = np.array([0, 1, 2, 3.0])[None, :, None].repeat(2, axis=2)  # 1 trial, 4 bins, 2 neurons
    pred = truth.copy()
    pred[0, 3, 0] = 4.0  # SS_res 1, SS_tot 5 -> 0.8 for neuron 0; neuron 1 perfect
    np.testing.assert_allclose(r2_per_neuron_vector(pred, truth), [0.8, 1.0])
    assert r2_per_neuron(pred, truth) == pytest.approx(0.9)
    assert r2_per_neuron(truth + 1.0, truth) < 0.9  # unlike r2_rates, an offset is penalised


def test_bits_per_spike_known_value() -> None:
    spikes = np.array([0.0, 2.0]).reshape(1, 2, 1)
    rates = np.array([0.5, 1.5]).reshape(1, 2, 1)
    # null rate 1: LL_null = -2; LL_model = -0.5 + 2 ln 1.5 - 1.5 -> 2 ln 1.5 / (2 ln 2)
    assert bits_per_spike(rates, spikes) == pytest.approx(np.log2(1.5))


def test_bits_per_spike_truth_positive_null_zero() -> None:
    rng = np.random.default_rng(1)
    truth = rng.gamma(2.0, 0.3, size=(50, 20, 8)) * np.linspace(0.2, 2, 8)
    spikes = rng.poisson(truth).astype(float)
    null = np.broadcast_to(spikes.reshape(-1, 8).mean(axis=0), spikes.shape)
    assert bits_per_spike(null, spikes) == pytest.approx(0.0, abs=1e-12)
    assert bits_per_spike(truth, spikes) > 0.05
    assert np.isfinite(bits_per_spike(np.zeros_like(truth), spikes))  # floored, not -inf


def test_gaussian_smooth_properties() -> None:
    const = np.full((2, 30, 3), 0.7)
    np.testing.assert_allclose(gaussian_smooth(const, 3.0), const)  # edge-corrected
    impulse = np.zeros((1, 41, 1))
    impulse[0, 20, 0] = 1.0
    out = gaussian_smooth(impulse, 2.0)[0, :, 0]
    assert out.sum() == pytest.approx(1.0) and out.argmax() == 20
    np.testing.assert_allclose(out[:20], out[21:][::-1])
    np.testing.assert_array_equal(gaussian_smooth(impulse, 0), impulse)


def test_smoothing_baseline_without_truth() -> None:
    spikes = np.random.default_rng(2).poisson(1.0, size=(3, 10, 2)).astype(float)
    base = smoothing_baseline(spikes)
    assert base["sigma_bins"] == 2.0 and base["r2_rates"] is None
    np.testing.assert_allclose(base["rates"], gaussian_smooth(spikes, 2.0))


def test_smoothing_baseline_on_lorenz() -> None:
    ds = lorenz_dataset(seed=0)
    valid = smoothing_baseline(ds.valid_data, ds.valid_truth)
    every = smoothing_baseline(ds.all_data(), ds.all_truth())
    print(
        f"smoothing baseline, Lorenz seed 0: valid r2_rates={valid['r2_rates']:.4f} "
        f"(sigma {valid['sigma_bins']:g}, r2_per_neuron {valid['r2_per_neuron']:.4f}); "
        f"all trials r2_rates={every['r2_rates']:.4f} (sigma {every['sigma_bins']:g})"
    )
    assert 0.3 < valid["r2_rates"] < 0.95
    assert 0.3 < every["r2_rates"] < 0.95
    # the oracle pick really is the best of the candidates
    for sigma in (1, 8):
        assert r2_rates(gaussian_smooth(ds.valid_data, sigma), ds.valid_truth) <= valid["r2_rates"]
    assert bits_per_spike(ds.valid_truth, ds.valid_data) > 0


def test_input_peaks_ignore_what_all_trials_share() -> None:
    """Every trial has a large start transient (shared) and its own smaller bump at its own time;
    the peak is the bump, and accuracy counts trials within the tolerance."""
    from autolfads.analysis.metrics import input_peak_bins, input_time_accuracy

    rng = np.random.default_rng(0)
    trials, bins = 40, 60
    times = rng.integers(15, 45, size=trials)
    u = np.zeros((trials, bins, 2))
    u[:, :3, 0] = 10.0  # shared transient, far larger than the events
    u[np.arange(trials), times, 1] = 2.0
    u += rng.normal(scale=0.05, size=u.shape)
    np.testing.assert_array_equal(input_peak_bins(u), times)
    assert input_time_accuracy(u, times) == 1.0
    shifted = times.copy()
    shifted[:10] += 3  # at the tolerance: still found
    shifted[10:20] -= 4  # beyond it: missed
    assert input_time_accuracy(u, shifted) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="true input times"):
        input_time_accuracy(u, times[:-1])


def test_compute_metrics_reports_input_time_accuracy() -> None:
    from autolfads.data.chaotic_rnn import chaotic_rnn_dataset
    from autolfads.results import compute_metrics

    ds = chaotic_rnn_dataset(seed=0, trials=30, bins=40, neurons=6, units=10)
    post = {}
    for split, inds in (("train", ds.train_inds), ("valid", ds.valid_inds)):
        data = ds.train_data if split == "train" else ds.valid_data
        inputs = np.zeros((len(inds), ds.n_time, 1))
        ok = inds % 2 == 0  # trials at even positions peak at the truth, the others 10 bins off
        t = ds.true_input_times[inds] + np.where(ok, 0, 10)
        inputs[np.arange(len(inds)), t, 0] = 1.0
        post |= {f"{split}_rates": data + 0.1, f"{split}_inferred_inputs": inputs}
    m = compute_metrics(ds, post)
    assert m["input_time_accuracy"] == pytest.approx(np.mean(np.arange(30) % 2 == 0))
    assert m["input_time_accuracy_valid"] == pytest.approx(np.mean(ds.valid_inds % 2 == 0))
    post |= {f"{s}_inferred_inputs": np.zeros((len(post[f"{s}_rates"]), ds.n_time, 0))
             for s in ("train", "valid")}  # no controller: no input metric
    assert "input_time_accuracy" not in compute_metrics(ds, post)
    no_pulse = chaotic_rnn_dataset(seed=0, trials=30, bins=40, neurons=6, units=10, pulse=0.0)
    assert no_pulse.true_input_times is None  # nothing to find without an input


def test_pooled_r2_is_one_minus_sse_over_sst_about_each_neurons_mean():
    from autolfads.analysis.metrics import r2_pooled

    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, 1.0, size=(6, 10, 3)) + np.array([0.0, 5.0, 50.0])
    pred = truth + rng.normal(0.0, 0.5, size=truth.shape)
    t, p = truth.reshape(-1, 3), pred.reshape(-1, 3)
    want = 1 - ((t - p) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()
    assert r2_pooled(pred, truth) == pytest.approx(want, rel=1e-12)
    means_only = np.broadcast_to(t.mean(0), truth.shape)
    assert r2_pooled(means_only, truth) == pytest.approx(0.0, abs=1e-12)
    assert r2_pooled(2 * truth, truth) < 0  # unlike the squared correlation (1.0 here)


def test_variance_explained_is_bits_per_spikes_counterpart_for_signals() -> None:
    from autolfads.analysis.metrics import variance_explained

    rng = np.random.default_rng(0)
    signal = np.sin(np.linspace(0, 6, 30))[None, :, None] * rng.normal(size=(40, 1, 5)) * 10
    data = signal + rng.normal(size=signal.shape) + np.arange(5) * 100.0  # channel offsets
    means = signal + np.arange(5) * 100.0
    ve = variance_explained(means, data)
    assert 0.9 < ve < 1.0  # the noise is left
    flat = np.broadcast_to(data.reshape(-1, 5).mean(0), data.shape)
    assert variance_explained(flat, data) == pytest.approx(0.0, abs=1e-12)
    assert variance_explained(flat - 5.0, data) < 0  # worse than the means


def test_fit_warnings_say_when_held_out_data_is_no_better_than_the_means_or_overfit() -> None:
    from autolfads.results import fit_warnings

    good = {"bps": 0.55, "bps_train": 0.56, "headline_split": "test"}
    assert fit_warnings(good) == []
    (w,) = fit_warnings({"bps": 0.004, "spikes_per_neuron": 900.0, "headline_split": "test"})
    assert "predicts them hardly better than each neuron's mean rate" in w
    (w,) = fit_warnings({"bps": 0.004, "spikes_per_neuron": 40.0, "headline_split": "test"})
    assert "from 40 spikes per neuron: too few to tell the model from each neuron's mean" in w
    (w,) = fit_warnings({"var_explained": -0.002, "var_explained_train": 0.001,
                         "headline_split": "test", "split_unit": "trials"})
    assert w.startswith("warning: the inferred means explain -0.002 of the test trials' "
                        "variance") and "predicts them no better than the means" in w
    assert fit_warnings({"var_explained": 0.002}) == []  # sparse events: small but real
    (w,) = fit_warnings({"bps": 0.12, "bps_valid": 0.12, "bps_train": 0.56,
                         "headline_split": "valid"})
    assert "bits/spike 0.560 on the training trials but 0.120 on the valid trials" in w
    assert "(overfitting); `autolfads run` tunes dropout" in w
    pbt = fit_warnings({"bps": -0.06, "bps_test": -0.06, "bps_train": 0.56,
                        "headline_split": "test", "generations": 5})
    assert len(pbt) == 2 and "widen the search space's dropout" in pbt[1]
    assert fit_warnings({"bps": 0.05, "bps_valid": 0.05, "bps_train": 0.09}) == []  # noise
