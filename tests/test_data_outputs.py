"""Writing a run's outputs (.mat / .h5, in the user's layout and trial order) and datasets in the
tutorial's .mat layout; reading them back."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from test_data_io import GOOD, N_NEURONS, N_TIME, N_TRIALS, TTN, _counts, _truth

from autolfads.config import DataConfig
from autolfads.data.dataset import Dataset
from autolfads.data.io import (
    from_array,
    load_dataset,
    write_lfads_h5,
    write_outputs,
    write_tutorial_mat,
)
from autolfads.errors import UserInputError


def _fake_post(ds: Dataset, co_dim: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    post = {}
    for split, data in (("train", ds.train_data), ("valid", ds.valid_data)):
        k = len(data)
        post[f"{split}_rates"] = data + 0.5
        post[f"{split}_factors"] = rng.normal(size=(k, ds.n_time, 3)).astype(np.float32)
        post[f"{split}_inferred_inputs"] = np.zeros((k, ds.n_time, co_dim), np.float32)
        post[f"{split}_ic_mean"] = rng.normal(size=(k, 4)).astype(np.float32)
    return post


def test_write_outputs_mat_and_h5(tmp_path: Path) -> None:
    x = _counts(9, (N_TRIALS, N_TIME, N_NEURONS))
    ds = from_array(x, truth=_truth(x), cfg=DataConfig(split="random"), bin_size_s=0.01)
    post = _fake_post(ds)
    paths = write_outputs(tmp_path / "run", ds, post)
    assert paths["h5"] == tmp_path / "run" / "output" / "lfads_output.h5"
    assert sorted(p.name for p in paths["h5"].parent.iterdir()) == [
        "lfads_output.h5", "lfads_output.mat",
    ]  # fmt: skip  (no temp files left behind)

    m = scipy.io.loadmat(paths["mat"])
    assert m["rates"].shape == (N_NEURONS, N_TIME, N_TRIALS)
    np.testing.assert_allclose(m["rates"], (x + 0.5).transpose(2, 1, 0))  # original order
    np.testing.assert_allclose(m["truth"], _truth(x).transpose(2, 1, 0), rtol=1e-6)
    assert m["factors"].shape == (3, N_TIME, N_TRIALS)
    assert m["inferred_inputs"].shape == (0, N_TIME, N_TRIALS)
    assert m["ic_mean"].shape == (4, N_TRIALS)
    np.testing.assert_allclose(m["ic_mean"][:, ds.valid_inds], post["valid_ic_mean"].T)
    assert m["train_inds"].dtype == np.float64 and m["train_inds"].shape == (1, len(ds.train_inds))
    np.testing.assert_array_equal(m["valid_inds"].ravel(), ds.valid_inds + 1)
    assert str(m["layout"][0]) == "trials_time_neurons"

    with h5py.File(paths["h5"], "r") as f:
        expected = {f"{s}_{k}" for s in ("train", "valid")
                    for k in ("rates", "factors", "inferred_inputs", "ic_mean")}  # fmt: skip
        expected |= {"train_inds", "valid_inds", "rates", "factors", "inferred_inputs", "ic_mean",
                     "truth"}  # fmt: skip
        assert expected <= set(f.keys())
        np.testing.assert_allclose(f["rates"][()], x + 0.5)
        np.testing.assert_array_equal(f["valid_inds"][()], ds.valid_inds)
        assert f["train_rates"].shape == (len(ds.train_inds), N_TIME, N_NEURONS)
        assert f["ic_mean"].shape == (N_TRIALS, 4)


def test_write_outputs_matlab_layout_has_no_layout_var(tmp_path: Path) -> None:
    path = tmp_path / "in.mat"
    scipy.io.savemat(path, {"data": GOOD})
    ds = load_dataset(path)
    m = scipy.io.loadmat(write_outputs(tmp_path / "run", ds, _fake_post(ds, co_dim=2))["mat"])
    assert "layout" not in m and m["inferred_inputs"].shape == (2, N_TIME, N_TRIALS)
    np.testing.assert_allclose(m["rates"], GOOD + 0.5)


def test_writers_never_overwrite_input(tmp_path: Path) -> None:
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        f["train_data"], f["valid_data"] = TTN[:15], TTN[15:]
    before = path.read_bytes()
    ds = load_dataset(path)
    with pytest.raises(UserInputError, match="input data file"):
        write_lfads_h5(path, ds)
    assert path.read_bytes() == before


def test_tutorial_mat_roundtrip(tmp_path: Path) -> None:
    x = _counts(10, (N_TRIALS, N_TIME, N_NEURONS))
    src = from_array(x, truth=_truth(x), conditions=np.arange(N_TRIALS) // 5, bin_size_s=0.01,
                     cfg=DataConfig(split="random"))  # fmt: skip
    path = write_tutorial_mat(tmp_path / "tut.mat", src)
    m = scipy.io.loadmat(path)
    assert m["data"].shape == (N_NEURONS, N_TIME, N_TRIALS)
    np.testing.assert_array_equal(m["conditions"].ravel(), np.arange(N_TRIALS) // 5 + 1)
    np.testing.assert_array_equal(m["valid_inds"].ravel(), src.valid_inds + 1)
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.all_data(), x)
    np.testing.assert_array_equal(ds.valid_inds, src.valid_inds)
    np.testing.assert_array_equal(ds.conditions, np.arange(N_TRIALS) // 5)
    np.testing.assert_allclose(ds.all_truth(), _truth(x), rtol=1e-6)
    assert ds.bin_size_s == pytest.approx(0.01)


def test_mat_cellstr_conditions(tmp_path: Path) -> None:
    labels = np.empty(N_TRIALS, dtype=object)
    labels[:] = ["left" if i % 2 else "right" for i in range(N_TRIALS)]
    path = tmp_path / "cell.mat"
    scipy.io.savemat(path, {"data": GOOD, "conditions": labels})
    ds = load_dataset(path)
    assert list(ds.conditions[:3]) == ["right", "left", "right"]
