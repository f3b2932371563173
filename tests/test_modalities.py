"""Recordings beyond spike counts: synthetic EMG and calcium, deconvolution, decode targets and
behaviour decoding, and training/outputs with a continuous observation model."""

import json

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import run_cli

from autolfads.analysis.decoding import decode_r2
from autolfads.data.deconvolve import DeconvolveOptions, deconvolve_dataset, deconvolve_traces
from autolfads.data.io import from_array, load_dataset
from autolfads.data.modalities import make_calcium, make_emg, modality_dataset
from autolfads.errors import UserInputError


def test_decoding_r2_equals_scikit_learns_cross_val_score():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 12, 5))
    targets = feats[:, -8:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(30, 8, 3))
    got = decode_r2(feats, targets)
    x = feats[:, -8:].reshape(-1, 5)  # targets cover the last 8 of 12 bins
    x = (x - x.mean(0)) / x.std(0)
    for v in range(3):
        y = targets[:, :, v].ravel()
        y = (y - y.mean()) / y.std()
        want = cross_val_score(Ridge(alpha=1), x, y, cv=10, scoring="r2").mean()
        assert got[v] == pytest.approx(want, abs=1e-12)


def test_synthetic_emg_is_gamma_around_the_true_means():
    d = make_emg(seed=1, channels=12, conditions=5, trials_per_condition=40, bins=30, shape=4.0)
    assert d.data.shape == d.truth.shape == (200, 30, 12) and (d.data > 0).all()
    assert d.behavior.shape == (200, 30, 3)
    ratio = d.data / d.truth  # Gamma(k, mu/k) / mu ~ Gamma(k, 1/k): mean 1, variance 1/k
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    assert ratio.var() == pytest.approx(0.25, rel=0.08)
    assert np.array_equal(make_emg(seed=1, channels=12, conditions=5, trials_per_condition=40,
                                   bins=30).data, d.data)  # deterministic per seed


def test_synthetic_calcium_and_deconvolution_recover_events():
    d = make_calcium(seed=0, neurons=6, conditions=4, trials_per_condition=5, bins=90,
                     noise=0.05)
    assert d.data.shape == d.truth.shape == d.spikes.shape == (20, 90, 6)
    assert (d.data < 0).any()  # dF/F with noise around a baseline: auto would pick gaussian
    events = deconvolve_traces(d.data, frame_rate_hz=30.0)
    assert events.shape == d.data.shape and (events >= 0).all()
    assert 0.5 < (events == 0).mean() < 0.99  # exact zeros where there is no event
    # Events sit where the spikes are: summed over a few frames, they follow the spike counts
    # (0.59 here), far better than the slow traces themselves do (0.15).
    def near(a):
        return np.apply_along_axis(np.convolve, 1, a, np.ones(3), "same").ravel()

    assert np.corrcoef(near(events), near(d.spikes))[0, 1] > 0.5
    assert np.corrcoef(near(d.data), near(d.spikes))[0, 1] < 0.3
    given = deconvolve_traces(d.data, DeconvolveOptions(tau_decay_s=0.4), frame_rate_hz=30.0)
    assert np.corrcoef(near(given), near(d.spikes))[0, 1] > 0.5


def test_deconvolving_a_dataset_keeps_split_order_truth_and_targets():
    ds = modality_dataset("calcium", seed=2, neurons=5, conditions=3, trials_per_condition=5,
                          bins=60)
    ev = deconvolve_dataset(ds)
    assert np.array_equal(ev.train_inds, ds.train_inds)
    assert np.array_equal(ev.train_truth, ds.train_truth)
    assert np.array_equal(ev.behavior, ds.behavior)
    direct = deconvolve_traces(ds.all_data(), frame_rate_hz=1 / ds.bin_size_s)
    np.testing.assert_array_equal(ev.all_data(), direct)  # the user's trial order


def test_deconvolve_cli_writes_events_and_never_overwrites(tmp_path, monkeypatch, capsys):
    traces = tmp_path / "traces.mat"
    code, _, err = run_cli(monkeypatch, capsys, "synth", "calcium", "--out", traces,
                           "--neurons", "4", "--conditions", "3", "--trials-per-condition", "4",
                           "--bins", "60")
    assert code == 0, err
    out = tmp_path / "events.h5"
    code, text, err = run_cli(monkeypatch, capsys, "deconvolve", traces, "--out", out)
    assert code == 0, err
    assert "wrote" in text and "events in" in text and "deconvolved 4/4 neurons" in err
    events, raw = load_dataset(out), load_dataset(traces)
    assert np.array_equal(events.valid_inds, raw.valid_inds)
    assert (events.all_data() >= 0).all() and (events.all_data() == 0).any()
    assert not np.array_equal(events.all_data(), np.round(events.all_data()))  # kept as floats
    before = out.read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "deconvolve", traces, "--out", out)
    assert code == 2 and err.strip().startswith("error: --out") and out.read_bytes() == before


def test_decode_targets_are_read_and_checked(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.poisson(1.0, size=(7, 20, 12)).astype(float)  # neurons x time x trials
    beh = rng.normal(size=(12, 15, 2))  # trials x time x variables, the last 15 bins
    scipy.io.savemat(tmp_path / "d.mat", {"data": data, "behavior": beh})
    ds = load_dataset(tmp_path / "d.mat")
    np.testing.assert_allclose(ds.behavior, beh, rtol=1e-6)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["train_data"], f["valid_data"] = data.T[:9], data.T[9:]
        f["train_decode"], f["valid_decode"] = beh[:9], beh[9:]
    np.testing.assert_allclose(load_dataset(tmp_path / "d.h5").behavior, beh, rtol=1e-6)
    for bad, words in [(beh[:10], ["12 trials", "found 10"]),
                       (rng.normal(size=(12, 25, 2)), ["25 bins"]),
                       (np.full((12, 15, 2), np.nan), ["NaN"])]:
        with pytest.raises(UserInputError) as info:
            from_array(data, layout="neurons_time_trials", behavior=bad)
        for w in words:
            assert w in str(info.value)


def test_bad_decode_targets_in_cli_are_one_error_line(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.mat"
    scipy.io.savemat(path, {"data": rng.poisson(1.0, size=(7, 20, 12)).astype(float),
                            "behavior": rng.normal(size=(11, 20, 2))})
    code, _, err = run_cli(monkeypatch, capsys, "train", path, "--out", tmp_path / "r")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "behavior" in err and "12 trials" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind,observation,extra", [
    ("emg", "gamma", []),
    ("calcium", "zero_inflated_gamma", ["--set", "data.deconvolve=true"]),
])
@pytest.mark.live_report
def test_continuous_data_train_report_export(kind, observation, extra, tmp_path, monkeypatch,
                                             capsys):
    """synth -> train with no observation flag -> auto's choice, metrics per modality, traces in
    the report, outputs in the data's units, export."""
    data = tmp_path / f"{kind}.h5"
    sizes = (["--channels", "8"] if kind == "emg" else ["--neurons", "8", "--bins", "60"])
    code, _, err = run_cli(monkeypatch, capsys, "synth", kind, "--out", data, "--conditions", "4",
                           "--trials-per-condition", "5", *sizes)
    assert code == 0, err
    run = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "train", data, "--out", run, "--epochs", "3",
                           "--set", "train.n_samples=4", *extra)
    assert code == 0, err
    assert f"observation model: {observation} (" in err and "decode targets: 3 variable" in err
    m = json.loads((run / "metrics.json").read_text())
    assert m["observation"] == observation and "bps" not in m
    assert np.isfinite(m["nll_per_bin_valid"]) and "r2_rates" in m
    # bits/spike's counterpart for a signal, per split, in the final line too
    assert {"var_explained", "var_explained_train", "var_explained_valid"} <= set(m)
    assert f"variance explained {m['var_explained']:.3f} (valid trials)" in err
    assert {"decode_r2", "decode_r2_smoothing", "decode_r2_2"} <= set(m)
    cfg = (run / "config.yaml").read_text()
    assert f"observation: {observation}" in cfg  # the choice is recorded for resume / report
    with h5py.File(run / "output" / "lfads_output.h5") as f:
        rates = f["rates"][()]
    assert (rates >= 0).all()
    page = (run / "report" / "index.html").read_text()
    assert "observed signal" in page and "bits/spike" not in page.split("final metrics")[1][:300]
    assert "<h3>Decoding</h3>" in page and f"{m['decode_r2']:.4g}" in page
    # Deconvolved events against spike rates: the page says the truth is in other units.
    other_units = "in other units than the data" in page
    assert other_units == (kind == "calcium") and ("the line is y = x" in page) != other_units
    code, _, err = run_cli(monkeypatch, capsys, "export", run, "--format", "npz")
    assert code == 0, err
    with np.load(run / "output" / "lfads_output.npz") as z:
        np.testing.assert_allclose(z["rates"], rates, rtol=1e-6)


QUICK = ["train.threads=1", "train.n_samples=10", "train.kl_increase_epochs=20",
         "train.l2_increase_epochs=20", "train.batch_size=50"]


def test_gamma_model_on_synthetic_emg_beats_smoothing():
    """No observation flag: auto picks gamma; the inferred means beat the best smoothing of the
    data against the true means, and so does decoding the targets from them."""
    import autolfads

    ds = modality_dataset("emg", seed=0, channels=12, conditions=10, trials_per_condition=10,
                          bins=30)
    m = autolfads.train(ds, quiet=True, epochs=60, overrides=QUICK).metrics
    assert m["observation"] == "gamma"
    assert m["r2_rates"] >= 0.9 and m["r2_rates"] > m["r2_smoothing"] + 0.03, m  # 0.954 / 0.891
    assert m["decode_r2"] > m["decode_r2_smoothing"], m


def test_deconvolved_calcium_with_zero_inflated_gamma_beats_smoothing():
    """dF/F -> events -> zero-inflated gamma: inferred rates closer to the true spike rates than
    smoothing the events or the traces (0.58 vs 0.36 vs 0.10 when written)."""
    import autolfads
    from autolfads.analysis.metrics import smoothing_baseline

    ds = modality_dataset("calcium", seed=0, neurons=12, conditions=8, trials_per_condition=10,
                          bins=50)
    m = autolfads.train(ds, quiet=True, epochs=40,
                        overrides=["data.deconvolve=true", *QUICK]).metrics
    traces = smoothing_baseline(ds.all_data(), ds.all_truth())["r2_rates"]
    assert m["observation"] == "zero_inflated_gamma"
    assert m["r2_rates"] > m["r2_smoothing"] + 0.1 and m["r2_smoothing"] > traces, (m, traces)
