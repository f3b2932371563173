"""Trials kept one array each, as labs keep trials of different lengths: a MATLAB cell array
(v5 and v7.3) or a Python list, stacked with every trial cut to the shortest, and said."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from autolfads.config import DataConfig
from autolfads.data.io import load_dataset
from autolfads.errors import UserInputError
from autolfads.inputs import resolve_data

RNG = np.random.default_rng(0)
N, K = 9, 24


def trials(lengths, channels_first=True) -> list[np.ndarray]:
    """Counts, one array per trial: channels x bins (MATLAB's habit) or bins x channels."""
    out = [RNG.poisson(1.0, (N, t)).astype(np.float64) for t in lengths]
    return out if channels_first else [a.T.copy() for a in out]


def cell(arrays) -> np.ndarray:
    c = np.empty((1, len(arrays)), dtype=object)  # MATLAB's 1 x K cell
    for k, a in enumerate(arrays):
        c[0, k] = a
    return c


def write_cell73(path: Path, arrays: list[np.ndarray]) -> Path:
    """A 1 x K cell saved by MATLAB -v7.3: references to datasets in #refs#, axes reversed."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        stored = []
        for k, a in enumerate(arrays):
            d = refs.create_dataset(f"t{k}", data=a.T)
            d.attrs["MATLAB_class"] = np.bytes_("double")
            stored.append(d.ref)
        c = f.create_dataset("data", data=np.array(stored, dtype=h5py.ref_dtype).reshape(-1, 1))
        c.attrs["MATLAB_class"] = np.bytes_("cell")
    return path


def test_a_cell_array_of_trials_of_different_lengths_is_cut_to_the_shortest(tmp_path):
    lengths = [40 + k % 7 for k in range(K)]
    arrays = trials(lengths)
    path = tmp_path / "cells.mat"
    scipy.io.savemat(path, {"data": cell(arrays)})
    for p in (path, write_cell73(tmp_path / "cells73.mat", arrays)):
        ds = load_dataset(p)
        assert (ds.n_trials, ds.n_time, ds.n_neurons) == (K, 40, N)
        np.testing.assert_array_equal(ds.all_data()[5], arrays[5][:, :40].T)
        assert any(f"{K} trials of 40 to 46 bins: each is cut to its first 40 (trial 0, "
                   "0-based, is the shortest)" in w for w in ds.meta["warnings"])


def test_trials_stored_the_other_way_round_and_python_lists(tmp_path):
    """A trial stored bins x channels in a .mat reads as channels that differ from trial to
    trial, which units lost during a session would look like too: the error names both, and
    the layout decides. From Python, a list of bins x channels trials, with decode targets and
    truth as lists beside it, is cut alike; a nested list of numbers is an array, as before."""
    lengths = [30 + k % 5 for k in range(K)]
    arrays = trials(lengths, channels_first=False)  # bins x channels in a .mat
    path = tmp_path / "t.mat"
    scipy.io.savemat(path, {"data": cell(arrays)})
    with pytest.raises(UserInputError, match=r"24 trials read as neurons x time have 30 to 34 "
                                             r"neurons: every trial needs the same channels "
                                             r"\(units lost during the session\?\); if each "
                                             "trial is time x neurons, pass --layout "
                                             "time_neurons_trials"):
        load_dataset(path)
    ds = load_dataset(path, DataConfig(layout="time_neurons_trials"))
    assert (ds.n_trials, ds.n_time, ds.n_neurons) == (K, 30, N)
    np.testing.assert_array_equal(ds.all_data()[2], arrays[2][:30])
    behavior = [RNG.normal(size=(n, 2)) for n in lengths]
    listed = resolve_data(arrays, DataConfig())  # Python: trials x (time x neurons)
    np.testing.assert_array_equal(listed.all_data(), ds.all_data())
    from autolfads.data.io import from_array

    with_beh = from_array(arrays, behavior=behavior, truth=[a + 0.5 for a in arrays])
    np.testing.assert_allclose(with_beh.behavior[4], behavior[4][:30], rtol=1e-6)
    np.testing.assert_array_equal(with_beh.all_truth()[4], arrays[4][:30] + 0.5)
    same = resolve_data([a[:30] for a in arrays], DataConfig())  # equal lengths: nothing said
    assert not any("cut" in w for w in same.meta.get("warnings", []))
    rec = RNG.poisson(1.0, (400, 6)).astype(np.float64)  # a recording given as nested lists
    assert from_array(rec.tolist(), cfg=DataConfig(segment_bins=40)).n_neurons == 6


def test_trials_that_cannot_be_stacked_are_named(tmp_path):
    short = trials([40] * K)
    short[7] = short[7][:, :3]
    scipy.io.savemat(tmp_path / "s.mat", {"data": cell(short)})
    with pytest.raises(UserInputError, match=r"trial 7 \(0-based\) has 3 bins, and every trial "
                                             "is cut to the shortest"):
        load_dataset(tmp_path / "s.mat")
    mixed = trials([40 + k for k in range(K)])
    mixed[3] = mixed[3][:5]  # fewer channels too
    scipy.io.savemat(tmp_path / "m.mat", {"data": cell(mixed)})
    with pytest.raises(UserInputError, match="have 5 to 9 neurons: every trial needs the same"):
        load_dataset(tmp_path / "m.mat")
    lengths = [100] * K
    lengths[0] = 30
    ds = load_dataset(write_cell73(tmp_path / "one_short.mat", trials(lengths)))
    assert ds.n_time == 30 and any("the median trial has 100, so most lose much" in w
                                   for w in ds.meta["warnings"])


def test_trials_padded_with_nan_after_their_ends_are_cut_to_the_shortest(tmp_path):
    """One array, each trial NaN after its end (MATLAB's usual way to keep trials of different
    lengths): cut to the shortest, with the truth and decode targets over the same bins; a NaN
    inside a trial is still an error, named as such."""
    x = RNG.poisson(1.0, (N, 60, K)).astype(np.float64)  # neurons x time x trials
    truth = np.full_like(x, 1.0)
    lengths = 40 + RNG.integers(0, 20, K)
    lengths[6] = 38
    for k in range(K):
        x[:, lengths[k]:, k] = np.nan
    behavior = RNG.normal(size=(K, 60, 2))  # trials x time x variables
    scipy.io.savemat(tmp_path / "pad.mat", {"data": x, "truth": truth, "behavior": behavior})
    ds = load_dataset(tmp_path / "pad.mat")
    assert (ds.n_trials, ds.n_time, ds.n_neurons) == (K, 38, N)
    np.testing.assert_array_equal(ds.all_data()[3], x[:, :38, 3].T)
    assert ds.all_truth().shape == (K, 38, N) and ds.behavior.shape == (K, 38, 2)
    assert any("trials of 38 to " in w and "padded with NaN after their ends: each is cut to "
               "its first 38 (trial 6, 0-based, is the shortest)" in w for w in ds.meta["warnings"])
    ends = x[:, ::-1, :].copy()  # trials aligned to their ends: NaN before their starts
    scipy.io.savemat(tmp_path / "ends.mat", {"data": ends, "behavior": behavior[:, ::-1]})
    late = load_dataset(tmp_path / "ends.mat")
    assert late.n_time == 38 and any("padded with NaN before their starts: each is cut to its "
                                     "last 38" in w for w in late.meta["warnings"])
    np.testing.assert_array_equal(late.all_data()[3], ends[:, -38:, 3].T)
    np.testing.assert_allclose(late.behavior[3], behavior[3, ::-1][-38:], rtol=1e-6)
    x[2, 5, 1] = np.nan
    scipy.io.savemat(tmp_path / "hole.mat", {"data": x})
    with pytest.raises(UserInputError, match=r"but 1 NaN lie inside trials \(first: trial 1, "
                                             r"bin 5, channel 2"):
        load_dataset(tmp_path / "hole.mat")


def test_a_struct_array_with_a_field_per_trial(tmp_path):
    """trials(k).spikes, as many labs keep a session: data.variable=trials.spikes reads each
    struct's field as one trial (v5 and v7.3)."""
    lengths = [35 + k % 4 for k in range(K)]
    arrays = trials(lengths)
    s = np.zeros((1, K), dtype=[("spikes", "O"), ("cond", "O")])
    for k, a in enumerate(arrays):
        s[0, k]["spikes"], s[0, k]["cond"] = a, k % 3
    scipy.io.savemat(tmp_path / "s.mat", {"trials": s})
    path73 = tmp_path / "s73.mat"
    with h5py.File(path73, "w") as f:
        refs, g = f.create_group("#refs#"), f.create_group("trials")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        stored = []
        for k, a in enumerate(arrays):
            d = refs.create_dataset(f"s{k}", data=a.T)
            d.attrs["MATLAB_class"] = np.bytes_("double")
            stored.append(d.ref)
        g.create_dataset("spikes", data=np.array(stored, dtype=h5py.ref_dtype).reshape(-1, 1))
    for p in (tmp_path / "s.mat", path73):
        ds = load_dataset(p, DataConfig(variable="trials.spikes"))
        assert (ds.n_trials, ds.n_time, ds.n_neurons) == (K, 35, N)
        np.testing.assert_array_equal(ds.all_data()[K - 1], arrays[K - 1][:, :35].T)


def test_equal_trials_with_more_channels_than_bins_empty_and_sparse_trials(tmp_path):
    """Equal lengths cannot tell time from channels: more channels than bins is said with the
    other layout; an empty trial is named; MATLAB's sparse rasters are read."""
    import scipy.sparse

    arrays = trials([20] * K)  # 9 neurons x 20 bins, stored the other way round: 20 x 9
    scipy.io.savemat(tmp_path / "eq.mat", {"data": cell([a.T for a in arrays])})
    ds = load_dataset(tmp_path / "eq.mat")
    assert any("each trial read as neurons x time has 20 neurons of 9 bins; if each trial is "
               "time x neurons, pass --layout time_neurons_trials" in w
               for w in ds.meta["warnings"])
    holed = [*arrays[:3], np.zeros((0, 0)), *arrays[4:]]
    scipy.io.savemat(tmp_path / "empty.mat", {"data": cell(holed)})
    with pytest.raises(UserInputError, match=r"trial 3 \(0-based\) is empty \(1 of 24"):
        load_dataset(tmp_path / "empty.mat")
    scipy.io.savemat(tmp_path / "sparse.mat",
                     {"data": cell([scipy.sparse.csc_matrix(a) for a in arrays])})
    np.testing.assert_array_equal(load_dataset(tmp_path / "sparse.mat").all_data()[1],
                                  arrays[1].T)
