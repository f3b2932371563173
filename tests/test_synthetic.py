"""The built-in Lorenz dataset: deterministic, sensible rates, shared per condition, loadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autolfads.data.io import load_dataset
from autolfads.data.synthetic import LorenzData, lorenz_dataset, make_lorenz, write_lorenz
from autolfads.errors import UserInputError


@pytest.fixture(scope="module")
def lorenz0() -> LorenzData:
    return make_lorenz(seed=0)


def test_shapes_and_types(lorenz0: LorenzData) -> None:
    d = lorenz0
    assert d.spikes.shape == d.rates.shape == (1300, 50, 29)
    assert d.latents.shape == (1300, 50, 3)
    assert d.conditions.shape == (1300,) and set(np.unique(d.conditions)) == set(range(65))
    assert d.spikes.dtype == np.float32 and d.rates.dtype == np.float32
    assert d.bin_size_s == 0.01
    assert (d.spikes >= 0).all() and (d.spikes == np.round(d.spikes)).all()


def test_deterministic_for_a_seed(lorenz0: LorenzData) -> None:
    again = make_lorenz(seed=0)
    for name in ("spikes", "rates", "latents", "conditions"):
        np.testing.assert_array_equal(getattr(again, name), getattr(lorenz0, name))


def test_seeds_differ(lorenz0: LorenzData) -> None:
    other = make_lorenz(seed=1)
    assert not np.allclose(other.rates, lorenz0.rates)
    assert not np.array_equal(other.spikes, lorenz0.spikes)


def test_rates_in_intended_range(lorenz0: LorenzData) -> None:
    mean_hz = lorenz0.rates.mean() / lorenz0.bin_size_s
    assert mean_hz == pytest.approx(20.0, rel=1e-3)  # b is set to hit the mean exactly
    assert lorenz0.spikes.mean() / lorenz0.bin_size_s == pytest.approx(20.0, rel=0.03)
    peak_hz = lorenz0.rates.max() / lorenz0.bin_size_s
    assert 100 < peak_hz < 1000  # modulated, but no neuron fires thousands of spikes/s
    per_neuron_hz = lorenz0.rates.mean(axis=(0, 1)) / lorenz0.bin_size_s
    assert per_neuron_hz.min() > 1 and per_neuron_hz.max() < 150


def test_conditions_share_rates_and_latents_are_zscored(lorenz0: LorenzData) -> None:
    d = lorenz0
    for c in (0, 17, 64):
        idx = np.flatnonzero(d.conditions == c)
        assert len(idx) == 20 and np.array_equal(idx, np.arange(20 * c, 20 * c + 20))
        assert (d.rates[idx] == d.rates[idx[0]]).all()
        assert not (d.spikes[idx] == d.spikes[idx[0]]).all()  # Poisson noise differs per trial
    assert not np.allclose(d.rates[0], d.rates[20])  # different conditions differ
    per_cond = d.latents[::20]
    np.testing.assert_allclose(per_cond.mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_cond.std(axis=(0, 1)), 1.0, atol=1e-5)


def test_latents_follow_the_attractor(lorenz0: LorenzData) -> None:
    # Lorenz x and y are strongly correlated and a trial moves a lot (about one loop or more).
    lat = lorenz0.latents[::20]
    assert np.corrcoef(lat[..., 0].ravel(), lat[..., 1].ravel())[0, 1] > 0.7
    assert np.median(np.ptp(lat[..., 2], axis=1)) > 1.0


def test_small_sizes() -> None:
    d = make_lorenz(seed=3, n_conditions=4, trials_per_condition=3, n_neurons=5, n_time=7)
    assert d.spikes.shape == (12, 7, 5)
    with pytest.raises(UserInputError):
        make_lorenz(n_neurons=0)


def test_lorenz_dataset_is_split_with_truth() -> None:
    ds = lorenz_dataset(seed=0)
    assert ds.n_trials == 1300 and len(ds.valid_inds) == 260
    np.testing.assert_array_equal(ds.valid_inds[:3], [4, 9, 14])
    assert ds.has_truth and ds.bin_size_s == 0.01 and ds.source == "built-in Lorenz (seed 0)"
    raw = make_lorenz(seed=0)
    np.testing.assert_array_equal(ds.all_data(), raw.spikes)
    np.testing.assert_array_equal(ds.all_truth(), raw.rates)
    np.testing.assert_array_equal(ds.conditions, raw.conditions)


@pytest.mark.parametrize("fmt", ["h5", "mat"])
def test_write_lorenz_loads_back(tmp_path: Path, fmt: str) -> None:
    path = write_lorenz(tmp_path / f"lorenz.{fmt}", seed=2, fmt=fmt)
    ds = load_dataset(path)
    ref = lorenz_dataset(seed=2)
    np.testing.assert_array_equal(ds.all_data(), ref.all_data())
    np.testing.assert_allclose(ds.all_truth(), ref.all_truth(), rtol=1e-6)
    np.testing.assert_array_equal(ds.valid_inds, ref.valid_inds)
    np.testing.assert_array_equal(ds.conditions, ref.conditions)
    assert ds.bin_size_s == pytest.approx(0.01)


def test_write_lorenz_format_checks(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--format"):
        write_lorenz(tmp_path / "x.mat", fmt="h5")
    with pytest.raises(UserInputError, match=r"\*\.h5"):
        write_lorenz(tmp_path / "x.npz")
    with pytest.raises(UserInputError, match="unknown format"):
        write_lorenz(tmp_path / "x.csv", fmt="csv")
    assert not list(tmp_path.iterdir())
