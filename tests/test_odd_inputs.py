"""Files and data that are valid but unusual, as an audit found them (2026-11-30): each is read
the way its author meant, or ends in one error line that names the real problem."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch
from test_data_io import write_mat73

from autolfads.analysis.decoding import decoding_metrics
from autolfads.analysis.metrics import r2_per_neuron
from autolfads.config import Config, DataConfig
from autolfads.data.io import from_array, load_dataset
from autolfads.errors import UserInputError
from autolfads.inputs import choose_observation
from autolfads.model.observations.choose import check_training, choose, warnings
from autolfads.model.observations.gaussian import Gaussian
from autolfads.model.observations.zero_inflated_gamma import ZeroInflatedGamma
from autolfads.results import defined_metrics

RNG = np.random.default_rng(0)
COUNTS = RNG.poisson(1.0, (12, 20, 30)).astype(np.float64)  # neurons x time x trials


@pytest.fixture(autouse=True)
def _same_draws_whatever_ran_before():
    """Each test draws the same numbers whichever tests ran before it in this process
    (pytest-xdist shares the tests between workers differently from run to run)."""
    global RNG
    RNG = np.random.default_rng(1)


def test_test_inds_alone_are_the_test_trials_and_the_rest_is_split(tmp_path: Path) -> None:
    p = tmp_path / "t.mat"
    scipy.io.savemat(p, {"data": COUNTS, "test_inds": np.arange(1, 31, 3)})  # MATLAB, 1-based
    ds = load_dataset(p)
    np.testing.assert_array_equal(ds.test_inds, np.arange(0, 30, 3))
    assert not set(ds.train_inds) & set(ds.test_inds) and not set(ds.valid_inds) & set(ds.test_inds)
    assert len(ds.train_inds) + len(ds.valid_inds) == 20 and len(ds.valid_inds) == 4
    assert any("1-based" in w for w in ds.meta["warnings"])  # 1..28: the base was assumed
    # 0 in the list settles the base without a word
    ds0 = from_array(COUNTS, layout="neurons_time_trials", test_inds=np.arange(0, 30, 3))
    np.testing.assert_array_equal(ds0.test_inds, np.arange(0, 30, 3))
    assert not ds0.meta["warnings"]
    with pytest.raises(UserInputError, match="leaves 5 of 30 trials"):
        from_array(COUNTS, layout="neurons_time_trials", test_inds=np.arange(25))


def test_a_files_layout_entry_is_honoured_in_every_format(tmp_path: Path) -> None:
    x = COUNTS.transpose(2, 1, 0)  # trials x time x neurons: 30 x 20 x 12
    scipy.io.savemat(tmp_path / "a.mat", {"data": x, "layout": "trials_time_neurons"})
    np.savez(tmp_path / "a.npz", data=x, layout=np.bytes_(b"trials_time_neurons"))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"] = x
        f.attrs["layout"] = "trials_time_neurons"
    with h5py.File(tmp_path / "g.h5", "w") as f:  # an array inside a group, layout on it
        f.create_group("session")["data"] = x
        f["session/data"].attrs["layout"] = "trials_time_neurons"
    for name, cfg in [("a.mat", None), ("a.npz", None), ("a.h5", None),
                      ("g.h5", DataConfig(variable="session/data"))]:
        ds = load_dataset(tmp_path / name, cfg)
        assert (ds.n_trials, ds.n_time, ds.n_neurons) == (30, 20, 12), name
        np.testing.assert_array_equal(ds.all_data(), x)
    with pytest.raises(UserInputError, match="in groups by their path: session/data"):
        load_dataset(tmp_path / "g.h5")
    # --layout beats the file's entry, and says that it does
    ds = load_dataset(tmp_path / "a.mat", DataConfig(layout="neurons_time_trials"))
    assert ds.n_trials == 12 and any("file says its layout" in w for w in ds.meta["warnings"])


def test_logical_masks_are_trial_sets(tmp_path: Path) -> None:
    valid = np.zeros(30, bool)
    valid[4::5] = True
    p = tmp_path / "m.mat"
    scipy.io.savemat(p, {"data": COUNTS, "train_inds": ~valid, "valid_inds": valid})
    ds = load_dataset(p)
    np.testing.assert_array_equal(ds.valid_inds, np.flatnonzero(valid))
    np.testing.assert_array_equal(ds.train_inds, np.flatnonzero(~valid))


@pytest.mark.parametrize("make, needle", [
    (lambda p: scipy.io.savemat(p, {"data": scipy.sparse.csc_matrix(np.eye(3))}),
     "is a sparse matrix; save it as a full array"),
    (lambda p: write_mat73(p, {"data": np.zeros((0, 0))}) and _mark_empty(p), "is empty"),
    (lambda p: _complex73(p), "is complex-valued"),
    (lambda p: scipy.io.savemat(p, {"data": COUNTS[:, :, :3]}), "only 3 trials (shape"),
], ids=["sparse v5", "empty v7.3", "complex v7.3", "three trials"])
def test_odd_matlab_files_get_the_right_message(tmp_path: Path, make, needle: str) -> None:
    p = tmp_path / "d.mat"
    make(p)
    with pytest.raises(UserInputError) as e:
        load_dataset(p)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert "--layout" not in str(e.value)  # no swap that would leave too few bins


def _mark_empty(p: Path) -> None:
    with h5py.File(p, "r+") as f:
        f["data"].attrs["MATLAB_empty"] = np.uint8(1)


def _complex73(p: Path) -> None:
    z = np.zeros((30, 20, 12), dtype=[("real", "f8"), ("imag", "f8")])
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=z).attrs["MATLAB_class"] = np.bytes_("double")


def test_v73_cellstr_conditions(tmp_path: Path) -> None:
    p = tmp_path / "c.mat"
    write_mat73(p, {"data": COUNTS})
    labels = ["left" if i % 2 else "right" for i in range(30)]
    with h5py.File(p, "r+") as f:
        refs = f.create_group("#refs#")
        out = np.empty((30, 1), dtype=h5py.ref_dtype)  # a 1 x 30 cell, stored reversed
        for i, lab in enumerate(labels):
            d = refs.create_dataset(f"r{i}", data=np.array([[ord(c)] for c in lab], np.uint16))
            d.attrs["MATLAB_class"] = np.bytes_("char")
            out[i, 0] = d.ref
        f.create_dataset("conditions", data=out).attrs["MATLAB_class"] = np.bytes_("cell")
    ds = load_dataset(p)
    assert list(ds.conditions) == labels


def test_counts_off_by_float_rounding_are_counts_and_small_signals_are_not() -> None:
    x = COUNTS.transpose(2, 1, 0)
    for near in (x * 1.0000001, x + 1e-9):
        assert choose(near)[0] == "poisson"
    ds = from_array(x * 1.0000001, layout="trials_time_neurons")
    cfg = Config()
    lines = choose_observation(cfg, ds)
    assert cfg.model.observation == "poisson" and any("rounded" in ln for ln in lines)
    np.testing.assert_array_equal(ds.all_data(), x)
    emg = RNG.gamma(5.0, 2e-5, (30, 20, 12))  # EMG in volts: every value below 1e-3
    assert choose(emg)[0] == "gamma"
    assert choose(np.zeros_like(x))[0] == "poisson"  # all zero: an error later, not a crash


def test_positive_data_on_a_large_baseline_is_gaussian() -> None:
    x = 1000.0 + RNG.normal(0, 1, (30, 20, 12))
    name, why = choose(x)
    assert name == "gaussian" and "far from zero" in why
    assert choose(RNG.gamma(2.0, 1.0, (30, 20, 12)))[0] == "gamma"


def test_channels_flat_or_silent_in_the_training_trials() -> None:
    x = RNG.normal(0, 1, (30, 20, 4))
    train = x[:24].copy()
    train[:, :, 1] = 0.0
    with pytest.raises(UserInputError, match=r"same value in every training trial \(0-based: 1\)"):
        check_training("gaussian", train, x, "d")
    ev = np.where(RNG.random((30, 20, 4)) < 0.1, RNG.gamma(2.0, 1.0, (30, 20, 4)), 0.0)
    ev[:, :, 2] = 0.0
    ev[27, 3, 2] = 1.3  # a rare cell's one event, in a validation trial
    lines = check_training("zero_inflated_gamma", ev[:24], ev, "d")
    assert len(lines) == 1 and "0-based: 2" in lines[0]
    # the model starts from finite values for that channel, and its Gaussian twin from a unit
    # that is not ~0
    bias = ZeroInflatedGamma(torch.tensor(ev[:24], dtype=torch.float32)).init_bias(
        torch.tensor(ev[:24], dtype=torch.float32))
    assert torch.isfinite(bias).all()
    g = Gaussian(torch.tensor(train, dtype=torch.float32))
    # (the floor is a millionth of the largest SD, rounded to float32)
    assert float(g.spread[1]) == pytest.approx(1e-6 * float(g.spread.max()), rel=1e-5)


def test_constant_channels_and_rate_like_counts_are_named() -> None:
    x = RNG.gamma(2.0, 1.0, (30, 20, 4))
    x[:, :, 3] = 2.5
    with pytest.raises(UserInputError, match="has the same value in every bin"):
        from autolfads.model.observations.choose import check

        check("gamma", x, "d")
    spikes_per_s = COUNTS.transpose(2, 1, 0) * 20
    assert any("multiple of 20" in w and "multiply by the bin width" in w
               for w in warnings("poisson", spikes_per_s))
    assert not any("multiple" in w for w in warnings("poisson", COUNTS))
    rare = COUNTS.transpose(2, 1, 0).copy()
    rare[..., :3] = 0
    rare[0, 0, 1], rare[5, 3, 2] = 1, 2  # neuron 0 never spikes, 1 and 2 once and twice
    said = warnings("poisson", rare)
    assert any("1 of" in w and "neurons never spike (0-based: 0)" in w for w in said)
    assert any("2 of" in w and "neurons spike fewer than 5 times in all the data (0-based: 1, 2)"
               in w for w in said)
    scaled = COUNTS.transpose(2, 1, 0) * 1e6  # a unit mistake: the remedy is a division
    assert any("multiple of 1000000" in w and "divide by 1000000 to get counts" in w
               for w in warnings("poisson", scaled))


def test_whole_numbers_on_a_baseline_are_a_signal_not_spike_counts() -> None:
    """An int16 signal riding on 200 (an ADC, LFP): far too regular for counts, which vary
    about as much as their mean; it is modelled as gaussian. Counts of 20-70 per bin (multi-unit
    activity) and our generators' counts stay poisson."""
    from autolfads.model.observations.choose import choose

    t = np.arange(50)
    sig = 3 * np.sin(t[None, :, None] / 5 + RNG.uniform(0, 6, (200, 1, 1)) + np.arange(20) / 3)
    adc = np.round(200 + sig + RNG.normal(0, 1, (200, 50, 20)))
    name, why = choose(adc)
    assert name == "gaussian" and "whole numbers but not spike counts" in why
    assert "a digitised signal on a baseline" in why
    assert choose(RNG.poisson(40.0, (100, 50, 20)).astype(float))[0] == "poisson"
    assert choose(COUNTS.astype(float))[0] == "poisson"
    raw = np.round(RNG.normal(1500, 100, (50, 40, 10)) + RNG.gamma(1, 50, (50, 40, 10)))
    name, why = choose(raw)  # raw fluorescence: shot noise makes its Fano factor large
    assert name == "gaussian" and "no bin holds fewer than 1" in why
    name, why = choose(np.round(90 + RNG.normal(0, 10, (100, 50, 5))))  # joint angles
    assert name == "poisson" and "if these are not spike counts" in why


def test_counts_divided_by_a_bin_width_are_recognised() -> None:
    """spikes/s at 30 ms bins: not whole numbers, so not poisson; every non-zero value is a
    multiple of 1/0.03 and the warning says how to get the counts back. A quantised signal
    (steps of 0.1 running to thousands) is not taken for one."""
    from autolfads.model.observations.choose import choose

    per_s = RNG.poisson(0.3, (200, 50, 40)) / 0.03
    name = choose(per_s)[0]
    assert name == "zero_inflated_gamma"
    (w,) = [w for w in warnings(name, per_s) if "whole multiple" in w]
    assert "multiple of 33.3333: spike counts divided by a bin width (0.03 s" in w
    assert "multiply by 0.03" in w
    quantised = np.round(RNG.gamma(2.0, 1.0, (200, 50, 10)) * 1000) / 10
    assert not any("whole multiple" in w for w in warnings(choose(quantised)[0], quantised))
    adc = np.round(RNG.gamma(2.0, 10.0, (100, 50, 8)) / 2.44) * 2.44  # a 12-bit ADC's uV steps
    assert not any("whole multiple" in w for w in warnings(choose(adc)[0], adc))


def test_an_array_with_fewer_trials_than_neurons_is_questioned(tmp_path) -> None:
    from autolfads.config import DataConfig
    from autolfads.inputs import resolve_data

    rates = RNG.gamma(1.0, 0.5, (1, 1, 40)) * RNG.uniform(0.8, 1.2, (200, 1, 1))
    x = RNG.poisson(np.broadcast_to(rates, (200, 50, 40))).astype(np.float64)
    upright = resolve_data(x, DataConfig())
    assert not any("Python's order" in w for w in upright.meta.get("warnings", []))
    flipped = resolve_data(np.ascontiguousarray(x.transpose(2, 1, 0)), DataConfig())
    assert any("read as trials x time x neurons (Python's order): 40 trials of 200 neurons; "
               "if its first axis holds the neurons, set data.layout=neurons_time_trials" in w
               for w in flipped.meta["warnings"])
    said = resolve_data(x.transpose(2, 1, 0), DataConfig(layout="neurons_time_trials"))
    assert said.n_trials == 200 and not any("Python's order" in w
                                            for w in said.meta.get("warnings", []))
    # Neuropixels-sized and upright: 150 trials of 300 units is not questioned
    rates = RNG.gamma(1.0, 0.5, (1, 1, 300)) * RNG.uniform(0.8, 1.2, (150, 1, 1))
    many = RNG.poisson(np.broadcast_to(rates, (150, 30, 300))).astype(np.float64)
    assert not any("Python's order" in w
                   for w in resolve_data(many, DataConfig()).meta.get("warnings", []))
    from autolfads.data.io import load_dataset  # the same array saved from Python: its file

    np.savez(tmp_path / "many.npz", data=many)  # is read in the tutorial's order, and asked
    ds = load_dataset(tmp_path / "many.npz")
    assert ds.n_trials == 300 and any("--layout trials_time_neurons" in w
                                      for w in ds.meta["warnings"])


def test_undefined_metrics_are_left_out_and_named() -> None:
    said: list[str] = []
    m = defined_metrics({"bps": float("nan"), "r2_rates": 0.5, "epochs": 3}, said.append)
    assert m == {"r2_rates": 0.5, "epochs": 3} and "bps" in said[0]
    truth = RNG.random((30, 20, 5))
    truth[:, :, 0] = 1.0  # one neuron with a constant true rate
    pred = truth + RNG.normal(0, 0.01, truth.shape)
    assert 0.9 < r2_per_neuron(pred, truth) <= 1.0


def test_constant_decode_targets_are_left_out() -> None:
    data = RNG.poisson(1.0, (40, 20, 6)).astype(float)
    beh = np.stack([RNG.normal(size=(40, 20)), np.ones((40, 20))], -1)
    m = decoding_metrics(data, data, beh)
    assert "decode_r2_1" not in m and "decode_r2_0" in m
    assert m["decode_r2"] == pytest.approx(m["decode_r2_0"])
    ds = from_array(data, behavior=beh)
    assert any("decode target(s) 1 (0-based) are constant" in w for w in ds.meta["warnings"])
    with pytest.raises(UserInputError, match=r"found 2 trials; its last axis has the data's "
                                             r"trials: .* permute\(behavior, \[3 2 1\]\)"):
        from_array(data, behavior=beh.transpose(2, 1, 0))  # MATLAB's variables x time x trials


def test_gamma_encoders_read_a_centred_signal() -> None:
    from autolfads.model.observations.gamma import Gamma

    x = torch.tensor(5.0 + RNG.gamma(4.0, 0.25, (30, 20, 3)), dtype=torch.float32)
    enc = Gamma(x).encoder_input(x).reshape(-1, 3)
    assert enc.mean(0).abs().max() < 1e-4 and (enc.std(0) - 1).abs().max() < 1e-3


def _posterior(ds, value: float = 1.0) -> dict[str, np.ndarray]:
    post = {}
    for sp in ds.splits:
        n = len(getattr(ds, f"{sp}_inds"))
        post[f"{sp}_rates"] = np.full((n, ds.n_time, ds.n_neurons), value, np.float32)
        post[f"{sp}_factors"] = RNG.normal(size=(n, ds.n_time, 4)).astype(np.float32)
        post[f"{sp}_inferred_inputs"] = np.zeros((n, ds.n_time, 2), np.float32)
        post[f"{sp}_ic_mean"] = np.zeros((n, 4), np.float32)
    return post


def test_text_conditions_reach_the_outputs_and_the_report(tmp_path: Path) -> None:
    from autolfads.analysis.report_data import RunView, conditions
    from autolfads.rundir.location import Location
    from autolfads.rundir.outputs import matlab_dict, read_outputs, write_outputs

    labels = np.array([f"reach_{i % 3}" for i in range(30)])
    ds = from_array(COUNTS, layout="neurons_time_trials", conditions=labels)
    write_outputs(tmp_path, ds, _posterior(ds))
    out = read_outputs(Location(tmp_path))
    assert list(out.arrays["conditions"]) == list(labels)
    cell = matlab_dict(out)["conditions"]  # a MATLAB cell array of the labels
    assert cell.dtype == object and list(cell) == list(labels)
    view = RunView.__new__(RunView)
    view.outputs, view.dataset = out, None
    np.testing.assert_array_equal(conditions(view), np.arange(30) % 3)


def test_deconvolved_events_are_compared_with_spike_rates_by_correlation_only() -> None:
    from autolfads.results import compute_metrics

    truth = RNG.gamma(2.0, 1.0, (30, 20, 12))
    ds = from_array(COUNTS, layout="neurons_time_trials", truth=truth.transpose(2, 1, 0))
    ds.meta["truth_scale_free"] = True  # as deconvolve_dataset marks it
    m = compute_metrics(ds, _posterior(ds, 0.5), "zero_inflated_gamma")
    assert "r2_rates" in m and "r2_rates_valid" in m
    assert not {"r2_valid", "r2_per_neuron", "r2_per_neuron_valid"} & set(m)


def test_a_truth_on_another_scale_is_compared_by_correlation_only() -> None:
    """True rates in spikes/s beside counts per bin (or spike rates beside dF/F): 1 - SSE/SST
    would say nothing (-39 in an audit), so the truth is marked as on another scale."""
    from autolfads.results import compute_metrics

    rates = RNG.gamma(2.0, 0.3, (40, 20, 8))
    counts = RNG.poisson(rates).astype(np.float64)
    same = from_array(counts, truth=rates)
    assert not same.meta["truth_scale_free"] and not _warned(same, "another scale")
    hz = from_array(counts, truth=rates * 100.0)  # 10 ms bins, truth in spikes/s
    (w,) = _warned(hz, "another scale")
    assert "its mean is 1e+02 times the data's" in w and "multiply it by the bin width" in w
    m = compute_metrics(hz, _posterior(hz, 0.5))
    assert "r2_rates" in m and not {"r2_valid", "r2_per_neuron"} & set(m)
    signal = np.sin(np.linspace(0, 6, 20))[None, :, None] * RNG.normal(size=(40, 1, 8))
    noisy = signal + 0.5 * RNG.normal(size=signal.shape)
    assert not _warned(from_array(noisy, truth=signal), "another scale")  # gaussian, same units
    heavy = signal + 9 * signal.std() * RNG.normal(size=signal.shape)  # noise 9x the signal
    assert not _warned(from_array(heavy, truth=signal), "another scale")
    assert _warned(from_array(noisy, truth=signal + 5.0), "another scale")  # an offset


def test_a_population_of_one_or_two_and_a_model_no_better_than_the_means_are_said() -> None:
    from conftest import tiny_config

    from autolfads import api

    one = from_array(RNG.poisson(0.5, (40, 20, 1)).astype(np.float64))  # one neuron, no dynamics
    assert _warned(one, "1 channel(s): LFADS infers the dynamics a population shares")
    assert not _warned(from_array(COUNTS, layout="neurons_time_trials"), "channel(s): LFADS")
    said: list[str] = []
    res = api.train(one, None, config=tiny_config(epochs=2), log=said.append)
    assert res.metrics["bps"] < 0.01 and any(  # 80 held-out spikes: too few to tell
        "spikes per neuron: too few to tell the model from each neuron's mean rate" in line
        for line in said)


def test_a_truth_that_differs_only_between_channels_is_not_scored() -> None:
    """Constant rates of different sizes: a pooled R^2 would score only the channels' means
    (0.995 on pure noise in an audit)."""
    from autolfads.results import compute_metrics

    rates = np.broadcast_to(RNG.gamma(2.0, 0.3, (1, 1, 8)), (40, 20, 8)).copy()
    ds = from_array(RNG.poisson(rates).astype(np.float64), truth=rates)
    assert _warned(ds, "the true rates hardly vary within each channel")
    m = compute_metrics(ds, _posterior(ds, 0.5))
    assert not {"r2_rates", "r2_smoothing"} & set(m) and m["truth_flat"] == 1.0


def test_full_length_behaviour_loses_its_forward_bins_and_held_out_continuous_data_warns() -> None:
    beh = RNG.normal(size=(30, 20, 2))
    ds = from_array(COUNTS, layout="neurons_time_trials", behavior=beh,
                    cfg=DataConfig(forward_bins=5))
    assert ds.behavior.shape == (30, 15, 2)
    np.testing.assert_allclose(ds.behavior, beh[:, :15], rtol=1e-6)
    gauss = from_array(RNG.normal(size=(30, 20, 12)), cfg=DataConfig(heldout_fraction=0.25))
    lines = choose_observation(Config(), gauss)
    assert any("no held-out metric is computed" in ln for ln in lines)


def test_a_signed_signal_chosen_as_gaussian_points_calcium_to_deconvolution() -> None:
    """Measured on synthetic calcium (12 neurons, 80 trials, 40 epochs, two seeds): R^2 vs the
    true spike rates 0.13 / 0.12 as gaussian on the dF/F, 0.58 / 0.61 deconvolved first."""
    signed = from_array(RNG.normal(size=(30, 20, 12)))
    hint = "`--set data.deconvolve=true` turns them into events first"
    assert any(hint in ln for ln in choose_observation(Config(), signed))
    chosen = Config()
    chosen.model.observation = "gaussian"  # said by the user: they know what the data are
    assert not any(hint in ln for ln in choose_observation(chosen, signed))
    counts = from_array(COUNTS, layout="neurons_time_trials")
    assert not any(hint in ln for ln in choose_observation(Config(), counts))


# -- a second audit of extreme shapes and values (2026-11-30) ----------------------------------

def _warned(ds, needle: str) -> list[str]:
    return [w for w in ds.meta.get("warnings", []) if needle in w]


def test_one_far_outlier_is_named_and_ordinary_data_is_not() -> None:
    x = RNG.poisson(1.0, (40, 20, 6)).astype(np.float64)  # trials x time x neurons
    assert not _warned(from_array(x), "far outside")
    x[7, 3, 2] = 1e6  # a glitch, or a missing-data code
    (w,) = _warned(from_array(x), "far outside")
    assert "channel(s) 2 (0-based)" in w and "1e+06 at trial 7, bin 3" in w
    z = RNG.standard_normal((40, 20, 6))  # continuous: z-scored, gamma-like, sparse events
    assert not _warned(from_array(z), "far outside")
    assert not _warned(from_array(RNG.gamma(4.0, 1.0, (40, 20, 6))), "far outside")
    events = np.where(RNG.random((40, 20, 6)) < 0.02, RNG.gamma(2.0, 1.0, (40, 20, 6)), 0.0)
    assert not _warned(from_array(events), "far outside")
    z[1, 1, 5] = -5e4
    (w,) = _warned(from_array(z), "far outside")
    assert "channel(s) 5" in w and "at trial 1, bin 1" in w
    # Real events in sparse or heavy-tailed data are not isolated: deconvolved events, a t(2).
    rng = np.random.default_rng(1)
    for sigma in (1.2, 1.5):
        ev = np.where(rng.random((200, 100, 40)) < 0.015,
                      rng.lognormal(0.0, sigma, (200, 100, 40)), 0.0)
        assert not _warned(from_array(ev), "far outside")
    assert not _warned(from_array(rng.standard_t(2, (200, 100, 10))), "far outside")
    # A missing-data code among sparse events is found.
    ev[5, 6, 7] = 65535
    (w,) = _warned(from_array(ev), "far outside")
    assert "channel(s) 7" in w and "65535 at trial 5, bin 6" in w


def test_trials_without_variability_or_activity_and_few_validation_trials_are_said() -> None:
    x = RNG.poisson(1.0, (40, 20, 6)).astype(np.float64)
    assert not _warned(from_array(x), "trial")
    x[[3, 9]] = 0
    assert _warned(from_array(x), "2 of 40 trials hold no activity at all (trials 3, 9")
    sparse = np.random.default_rng(2).poisson(0.002, (200, 20, 10)).astype(np.float64)
    assert not _warned(from_array(sparse), "no activity at all")  # silent by chance
    same = np.broadcast_to(x[:1], x.shape).copy()
    assert _warned(from_array(same), "every trial is the same")
    few = from_array(RNG.poisson(1.0, (12, 20, 6)).astype(np.float64))
    assert len(few.valid_inds) == 2 and _warned(few, "2 validation trial(s)")


def test_zero_padded_trials_of_different_lengths_are_said() -> None:
    x = RNG.poisson(0.3, (60, 40, 12)).astype(np.float64)  # a silent bin: ~3% of bins
    assert not _warned(from_array(x), "padding")
    lengths = RNG.integers(20, 41, size=60)
    padded = x.copy()
    for i, n in enumerate(lengths):
        padded[i, n:] = 0
    (w,) = _warned(from_array(padded), "zero-padding")
    longest = int(np.argmin(lengths))
    assert f"(longest: trial {longest}, bins {lengths[longest]}-39, 0-based)" in w
    assert int(w.split(": ")[1].split(" of ")[0]) >= (lengths <= 35).sum()  # 5 bins or more
    dense = RNG.poisson(RNG.uniform(0.01, 1, (1, 1, 30)), (100, 100, 30)).astype(np.float64)
    for i, n in enumerate(RNG.integers(90, 101, 100)):  # padded by 10 bins at most
        dense[i, n:] = 0
    assert _warned(from_array(dense), "zero-padding")
    cut = x.copy()
    cut[:, 30:] = 0  # the same bins empty in every trial: a recording cut short
    assert _warned(from_array(cut), "the last 10 bins are exactly 0 in every trial and channel")
    # activity that fades at the end of every trial, and sparse data, are not padding
    fading = np.full((600, 60, 30), 0.08)
    fading[:, -20:] = 0.02
    assert not _warned(from_array(RNG.poisson(fading).astype(np.float64)), "padding")
    sparse = np.random.default_rng(3).poisson(0.01, (100, 50, 10)).astype(np.float64)
    assert not _warned(from_array(sparse), "padding")
    # population-wide silences at other times in each trial (an oscillation's troughs, random
    # phase, 1 ms bins) are no padding, though each bin alone would make them unlikely
    t = np.arange(300)[None, :, None] / 1000.0
    phase = RNG.uniform(0, 2 * np.pi, (80, 1, 1))
    rate = 0.5 + (RNG.uniform(0.5, 100, 30) - 0.5) * 0.5 * (1 + np.sin(2 * np.pi * 4 * t + phase))
    assert not _warned(from_array(RNG.poisson(rate / 1000).astype(np.float64)), "padding")


def test_channels_that_are_copies_of_each_other_are_said() -> None:
    """A neuron sorted twice lets LFADS pass one copy's spikes to the other (measured in an
    audit: 30 copies of one neuron gave test bits/spike 2.25)."""
    x = RNG.poisson(0.5, (60, 30, 10)).astype(np.float64)
    assert not _warned(from_array(x), "copies")
    twice = np.concatenate([x, x[..., [2]]], axis=-1)
    (w,) = _warned(from_array(twice), "copies")
    assert "1 pair(s) of channels are (nearly) copies of each other (0-based: 2 and 10 (r = 1.00" \
        in w and "keep one channel of each pair" in w
    # a neuron sorted twice shares most spikes, not all (90%): still a copy
    base = RNG.poisson(np.exp(np.sin(np.linspace(0, 6, 50)))[None, :, None] * 0.5,
                       (200, 50, 20)).astype(np.float64)
    part = RNG.binomial(base[..., 3].astype(int), 0.9)[..., None].astype(np.float64)
    assert _warned(from_array(np.concatenate([base, part], -1)), "0-based: 3 and 20 (r = 0.9")
    # a strong stimulus response shared by every channel (multi-unit, 50 ms bins) is not
    stim = np.zeros(40)
    stim[10:20] = 1.0
    drive = (RNG.uniform(20, 60, 96) + RNG.uniform(100, 400, 96) * stim[:, None]) * 0.05
    mua = RNG.poisson(np.broadcast_to(drive, (100, 40, 96))).astype(np.float64)
    assert not _warned(from_array(mua), "copies")
    # nor whole numbers that are no spike counts (an LFP in integer microvolts)
    common = np.cumsum(RNG.normal(size=(50, 200, 1)), axis=1)
    lfp = np.round((common + 0.15 * RNG.normal(size=(50, 200, 16))) * 50)
    assert not _warned(from_array(lfp), "copies")
    # continuous signals may be that correlated by nature: only exact copies count
    emg = np.exp(RNG.normal(size=(60, 30, 1)) + 0.05 * RNG.normal(size=(60, 30, 4)))
    assert not _warned(from_array(emg), "copies")
    assert _warned(from_array(np.concatenate([emg, emg[..., :1]], -1)), "0 and 4 (r = 1.00)")


def test_a_test_split_cannot_leave_fewer_than_ten_trials_to_train_and_validate() -> None:
    x = RNG.poisson(1.0, (12, 20, 6)).astype(np.float64)
    cfg = DataConfig(split="random", test_fraction=0.49, valid_fraction=0.5)
    with pytest.raises(UserInputError, match="5 test trials leave 7 of 12 for training and "
                                             "validation; LFADS needs at least 10"):
        from_array(x, cfg=cfg)
    with pytest.raises(UserInputError, match="larger data.test_every"):
        from_array(x, cfg=DataConfig(test_every=2))


def test_no_axis_swap_is_suggested_for_a_file_that_says_its_layout(tmp_path: Path) -> None:
    x = RNG.poisson(1.0, (5, 50, 20)).astype(np.float64)
    np.savez(tmp_path / "said.npz", data=x, layout="trials_time_neurons")
    with pytest.raises(UserInputError) as e:
        load_dataset(tmp_path / "said.npz")
    assert "only 5 trials" in str(e.value) and "--layout" not in str(e.value)
    np.savez(tmp_path / "unsaid.npz", data=x)
    with pytest.raises(UserInputError, match="--layout"):
        load_dataset(tmp_path / "unsaid.npz", DataConfig(layout="trials_time_neurons"))


def test_a_long_training_says_how_long_after_its_first_epoch(tiny, monkeypatch) -> None:
    from conftest import tiny_config

    from autolfads.training import loop

    monkeypatch.setattr(loop, "LONG_RUN_S", 0.0)
    said = []
    loop.Trainer(tiny_config(epochs=3), tiny).fit(log=said.append, early_stop=False)
    long = [s for s in said if "s per epoch the other 2 epochs take up to" in s]
    assert len(long) == 1 and said.index(long[0]) == 1  # once, after the first epoch's line
