"""Reading and writing data: round trips for every format, the split, every bad-input message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from autolfads.config import DataConfig
from autolfads.data.dataset import Dataset
from autolfads.data.io import (
    from_array,
    load_dataset,
    split_trials,
    write_lfads_h5,
)
from autolfads.errors import UserInputError

N_NEURONS, N_TIME, N_TRIALS = 6, 8, 20


def _counts(seed: int = 0, shape: tuple[int, ...] = (N_NEURONS, N_TIME, N_TRIALS)) -> np.ndarray:
    """Spike counts in the tutorial layout, neurons x time x trials."""
    return np.random.default_rng(seed).poisson(1.5, size=shape).astype(np.float64)


def _truth(data: np.ndarray) -> np.ndarray:
    return data * 0.5 + 0.25


def write_mat73(path: Path, variables: dict[str, object], userblock: bool = True) -> Path:
    """Write a .mat the way MATLAB's `save -v7.3` does: HDF5, axes reversed, MATLAB_class attrs."""
    with h5py.File(path, "w", userblock_size=512 if userblock else 0) as f:
        for name, value in variables.items():
            if isinstance(value, str):
                arr = np.array([[ord(c)] for c in value], dtype=np.uint16)  # 1 x L, reversed
                f.create_dataset(name, data=arr).attrs["MATLAB_class"] = np.bytes_("char")
                continue
            arr = np.asarray(value)
            arr = arr.reshape(1, -1) if arr.ndim < 2 else arr  # MATLAB arrays are at least 2-D
            cls = "logical" if arr.dtype == bool else "double"
            stored = arr.astype(np.uint8 if cls == "logical" else np.float64).T
            f.create_dataset(name, data=stored).attrs["MATLAB_class"] = np.bytes_(cls)
    if userblock:
        header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
        header += b"HDF5 schema 1.00 ."
        with open(path, "r+b") as fh:
            fh.write(header.ljust(116, b" ") + bytes(8) + b"\x00\x02" + b"IM")
    return path


def _check_tutorial_roundtrip(ds: Dataset, data: np.ndarray, truth: np.ndarray) -> None:
    np.testing.assert_array_equal(ds.all_data(), data.transpose(2, 1, 0))
    np.testing.assert_allclose(ds.all_truth(), truth.transpose(2, 1, 0), rtol=1e-6)
    assert ds.train_data.dtype == np.float32 and ds.train_data.flags.c_contiguous
    assert ds.n_trials == N_TRIALS and ds.n_time == N_TIME and ds.n_neurons == N_NEURONS


# ------------------------------------------------------------------------- round trips


def test_mat_v5_roundtrip_with_one_based_inds_and_conditions(tmp_path: Path) -> None:
    data = _counts()
    valid_1b = np.array([2, 7, 12, 17])  # MATLAB indices
    train_1b = np.setdiff1d(np.arange(1, N_TRIALS + 1), valid_1b)
    cond_1b = np.repeat(np.arange(1, 5), 5)
    path = tmp_path / "d.mat"
    scipy.io.savemat(path, {
        "data": data, "truth": _truth(data), "train_inds": train_1b, "valid_inds": valid_1b,
        "conditions": cond_1b, "bin_size_ms": 20.0,
    })  # fmt: skip
    ds = load_dataset(path)
    _check_tutorial_roundtrip(ds, data, _truth(data))
    np.testing.assert_array_equal(ds.valid_inds, valid_1b - 1)
    np.testing.assert_array_equal(ds.train_inds, train_1b - 1)
    np.testing.assert_array_equal(ds.valid_data, data.transpose(2, 1, 0)[valid_1b - 1])
    np.testing.assert_array_equal(ds.conditions, cond_1b - 1)
    assert ds.bin_size_s == pytest.approx(0.02)
    assert ds.layout == "neurons_time_trials"
    assert ds.source == str(path)


@pytest.mark.parametrize("userblock", [True, False])
def test_mat_v73_roundtrip(tmp_path: Path, userblock: bool) -> None:
    data = _counts(1)
    path = write_mat73(tmp_path / "d73.mat", {
        "data": data, "truth": _truth(data), "train_inds": np.arange(1, 16),
        "valid_inds": np.arange(16, 21), "dt": 0.01, "note": "hello",
    }, userblock=userblock)  # fmt: skip
    if userblock:
        assert path.read_bytes()[:10] == b"MATLAB 7.3"
    ds = load_dataset(path)
    _check_tutorial_roundtrip(ds, data, _truth(data))
    np.testing.assert_array_equal(ds.valid_inds, np.arange(15, 20))
    assert ds.bin_size_s == pytest.approx(0.01)


def test_mat_v73_logical_data_and_default_split(tmp_path: Path) -> None:
    data = _counts(2) > 1
    ds = load_dataset(write_mat73(tmp_path / "b.mat", {"data": data}))
    np.testing.assert_array_equal(ds.all_data(), data.transpose(2, 1, 0).astype(np.float32))
    np.testing.assert_array_equal(ds.valid_inds, [4, 9, 14, 19])
    assert ds.meta["split"] == "every_nth"


def test_lfads_h5_roundtrip_via_writer(tmp_path: Path) -> None:
    x = _counts(3, (N_TRIALS, N_TIME, N_NEURONS))
    cfg = DataConfig(split="random", split_seed=4)
    ext = np.random.default_rng(0).normal(size=(N_TRIALS, N_TIME, 2))
    src = from_array(x, truth=_truth(x), conditions=np.arange(N_TRIALS) % 4, cfg=cfg,
                     ext_input=ext, bin_size_s=0.005)  # fmt: skip
    path = write_lfads_h5(tmp_path / "d.h5", src)
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.train_inds, src.train_inds)
    np.testing.assert_array_equal(ds.valid_inds, src.valid_inds)
    np.testing.assert_array_equal(ds.all_data(), x)
    np.testing.assert_allclose(ds.all_truth(), _truth(x), rtol=1e-6)
    np.testing.assert_allclose(ds.to_original_order(ds.train_ext_input, ds.valid_ext_input),
                               ext, rtol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(ds.conditions, np.arange(N_TRIALS) % 4)
    assert ds.bin_size_s == pytest.approx(0.005)
    assert ds.layout == "trials_time_neurons"


def test_lfads_h5_without_inds_puts_train_first(tmp_path: Path) -> None:
    x = _counts(4, (N_TRIALS, N_TIME, N_NEURONS))
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["train_data"], f["valid_data"] = x[:16].astype(np.int64), x[16:].astype(np.int64)
        f.attrs["bin_size_ms"] = 10.0
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.train_inds, np.arange(16))
    np.testing.assert_array_equal(ds.valid_inds, np.arange(16, 20))
    np.testing.assert_array_equal(ds.all_data(), x)
    assert ds.bin_size_s == pytest.approx(0.01) and not ds.has_truth


def test_lfads_h5_one_based_inds_interleave(tmp_path: Path) -> None:
    x = _counts(5, (N_TRIALS, N_TIME, N_NEURONS))
    valid = np.array([0, 5, 10, 15])
    train = np.setdiff1d(np.arange(N_TRIALS), valid)
    path = tmp_path / "oneb.h5"
    with h5py.File(path, "w") as f:
        f["train_data"], f["valid_data"] = x[train], x[valid]
        f["train_inds"], f["valid_inds"] = train + 1, valid + 1
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.valid_inds, valid)
    np.testing.assert_array_equal(ds.all_data(), x)


def test_npz_with_layout_entry_and_cfg_override(tmp_path: Path) -> None:
    x = _counts(6, (N_TRIALS, N_TIME, N_NEURONS))
    path = tmp_path / "d.npz"
    np.savez(path, data=x.astype(np.int16), truth=_truth(x), layout="trials_time_neurons")
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.all_data(), x)
    assert ds.layout == "trials_time_neurons" and ds.has_truth
    # the config beats the file's own entry
    path2 = tmp_path / "d2.npz"
    np.savez(path2, data=x.transpose(1, 0, 2), layout="trials_time_neurons")
    ds2 = load_dataset(path2, DataConfig(layout="time_trials_neurons"))
    np.testing.assert_array_equal(ds2.all_data(), x)


def test_mat_custom_variable_and_layout(tmp_path: Path) -> None:
    x = _counts(7, (N_TRIALS, N_TIME, N_NEURONS))
    path = tmp_path / "spk.mat"
    scipy.io.savemat(path, {"spikes": x})
    ds = load_dataset(path, DataConfig(variable="spikes", layout="trials_time_neurons"))
    np.testing.assert_array_equal(ds.all_data(), x)


def test_to_original_order_after_random_split() -> None:
    x = _counts(8, (N_TRIALS, N_TIME, N_NEURONS))
    ds = from_array(x, truth=_truth(x), cfg=DataConfig(split="random", valid_fraction=0.3))
    assert len(ds.valid_inds) == 6 and not np.array_equal(ds.valid_inds, np.arange(14, 20))
    np.testing.assert_array_equal(ds.all_data(), x)
    np.testing.assert_array_equal(ds.train_data, x[ds.train_inds])
    np.testing.assert_allclose(ds.all_truth(), _truth(x), rtol=1e-6)


def test_split_trials() -> None:
    train, valid, test = split_trials(20)
    np.testing.assert_array_equal(valid, [4, 9, 14, 19])
    assert len(train) == 16 and not set(train) & set(valid) and len(test) == 0  # too few
    rnd = DataConfig(split="random", valid_fraction=0.1, split_seed=3)
    tr1, va1, te1 = split_trials(101, rnd)
    tr2, va2, te2 = split_trials(101, rnd)
    np.testing.assert_array_equal(va1, va2)
    np.testing.assert_array_equal(te1, te2)
    assert len(va1) == 10 and len(te1) == 10 and len(tr1) == 81  # a test set from 100 trials
    np.testing.assert_array_equal(np.sort(np.concatenate([tr1, va1, te1])), np.arange(101))
    _, va3, _ = split_trials(101, DataConfig(split="random", valid_fraction=0.1, split_seed=4))
    assert not np.array_equal(va1, va3)
    _, tiny, _ = split_trials(10, DataConfig(split="random", valid_fraction=0.01))
    assert len(tiny) == 1  # never an empty validation set


def test_test_split_every_nth_auto_and_configured() -> None:
    train, valid, test = split_trials(200)
    np.testing.assert_array_equal(test, np.arange(0, 200, 10))  # 1-based trials 1, 11, 21, ...
    np.testing.assert_array_equal(valid, np.arange(4, 200, 5))
    assert len(train) == 140
    np.testing.assert_array_equal(np.sort(np.concatenate([train, valid, test])), np.arange(200))
    _, _, none = split_trials(200, DataConfig(test_every=0))
    assert len(none) == 0
    _, valid, test = split_trials(40, DataConfig(test_every=4))  # asked for on small data
    assert len(test) == 8 and not set(test) & set(valid)  # 4 and 24 are validation trials
    with pytest.raises(UserInputError, match="no training trials"):
        split_trials(20, DataConfig(valid_every=2, test_every=1))


def test_a_random_split_says_when_it_gives_fewer_test_trials_than_asked() -> None:
    x = _counts(5, (12, N_TIME, N_NEURONS))
    ds = from_array(x, cfg=DataConfig(split="random", test_fraction=0.04))
    assert not ds.has_test
    assert any("test_fraction=0.04 of 12 trials is 0.48 trials, which rounds to none" in w
               for w in ds.meta["warnings"])
    cfg = DataConfig(split="random", valid_fraction=0.9, test_fraction=0.4)  # 11 + 5 of 12
    ds = from_array(x, cfg=cfg)
    assert len(ds.test_inds) == 0 and len(ds.valid_inds) == 11 and len(ds.train_inds) == 1
    assert any("asks for 5 test trials of 12; 0 fit" in w for w in ds.meta["warnings"])
    asked = from_array(_counts(6, (40, N_TIME, N_NEURONS)),
                       cfg=DataConfig(split="random", test_fraction=0.2))
    assert len(asked.test_inds) == 8 and not any("test_fraction" in w
                                                 for w in asked.meta["warnings"])


def test_test_trials_are_kept_apart_and_round_trip(tmp_path: Path) -> None:
    from autolfads.data.writers import write_lfads_h5, write_tutorial_mat

    x = _counts(3, (120, N_TIME, N_NEURONS))
    ds = from_array(x, truth=_truth(x))
    assert len(ds.test_inds) == 12 and ds.test_data.shape == (12, N_TIME, N_NEURONS)
    assert "/ 12 test" in ds.summary()
    np.testing.assert_array_equal(ds.all_data(), x)
    np.testing.assert_allclose(ds.test_truth, _truth(x)[ds.test_inds], rtol=1e-6)
    for path in (write_lfads_h5(tmp_path / "d.h5", ds), write_tutorial_mat(tmp_path / "d.mat", ds)):
        back = load_dataset(path)
        for sp in ("train", "valid", "test"):
            np.testing.assert_array_equal(getattr(back, f"{sp}_inds"), getattr(ds, f"{sp}_inds"))
        np.testing.assert_array_equal(back.all_data(), x)
    small = from_array(x[:50])
    assert not small.has_test and "no test trials" in small.summary()


def test_users_test_inds_are_honoured(tmp_path: Path) -> None:
    x = _counts(4, (N_TRIALS, N_TIME, N_NEURONS))  # trials x time x neurons
    scipy.io.savemat(tmp_path / "t.mat", {
        "data": x.transpose(2, 1, 0), "train_inds": np.arange(1, 13), "valid_inds": [13, 14, 15],
        "test_inds": np.arange(16, 21)})
    ds = load_dataset(tmp_path / "t.mat")
    np.testing.assert_array_equal(ds.test_inds, np.arange(15, 20))
    np.testing.assert_array_equal(ds.test_data, x[15:])
    scipy.io.savemat(tmp_path / "bad.mat", {
        "data": x.transpose(2, 1, 0), "train_inds": np.arange(1, 13), "valid_inds": [13, 14, 15],
        "test_inds": np.arange(15, 21)})
    with pytest.raises(UserInputError, match="train_inds/valid_inds/test_inds"):
        load_dataset(tmp_path / "bad.mat")
    with pytest.raises(UserInputError, match="valid_every"):
        split_trials(10, DataConfig(valid_every=11))


# ------------------------------------------------------------------------- bad input

Case = Callable[[Path], tuple[Path, DataConfig | None]]


def _mat(name: str, **variables: object) -> Case:
    def make(tmp: Path) -> tuple[Path, DataConfig | None]:
        path = tmp / name
        scipy.io.savemat(path, variables)
        return path, None

    return make


def _raw(name: str, content: bytes) -> Case:
    def make(tmp: Path) -> tuple[Path, DataConfig | None]:
        (tmp / name).write_bytes(content)
        return tmp / name, None

    return make


def _with_cfg(case: Case, **cfg: object) -> Case:
    def make(tmp: Path) -> tuple[Path, DataConfig | None]:
        return case(tmp)[0], DataConfig(**cfg)

    return make


def _h5(name: str, **datasets: np.ndarray) -> Case:
    def make(tmp: Path) -> tuple[Path, DataConfig | None]:
        with h5py.File(tmp / name, "w") as f:
            for key, value in datasets.items():
                f[key] = value
        return tmp / name, None

    return make


def _npz(name: str, **arrays: object) -> Case:
    def make(tmp: Path) -> tuple[Path, DataConfig | None]:
        np.savez(tmp / name, **arrays)
        return tmp / name, None

    return make


def _missing(tmp: Path) -> tuple[Path, DataConfig | None]:
    return tmp / "nope.mat", None


def _with_value(value: float, at: tuple[int, int, int] = (1, 2, 3)) -> np.ndarray:
    d = _counts()
    d[at] = value
    return d


def _with_nan_count(n: int) -> np.ndarray:
    d = _counts()
    d.reshape(-1)[[5, 9, 11][:n]] = np.nan
    return d


GOOD = _counts()
TTN = _counts(0, (N_TRIALS, N_TIME, N_NEURONS))
VALID_1B = np.array([5, 10, 15, 20])
TRAIN_1B = np.setdiff1d(np.arange(1, 21), VALID_1B)


def bad(case_id: str, case: Case, *needles: str) -> object:
    return pytest.param(case, list(needles), id=case_id)


def _h5_split(name: str, **extra: np.ndarray) -> Case:
    return _h5(name, train_data=TTN[:15], valid_data=TTN[15:], **extra)


BAD_CASES = [
    bad("missing_file", _missing, "nope.mat", "not found"),
    bad("corrupt_mat", _raw("bad.mat", b"not a mat file" * 20), "bad.mat", "could not be read"),
    bad("corrupt_h5", _raw("bad.h5", b"\x89HDF garbage" * 50), "bad.h5", "could not be read"),
    bad("corrupt_npz", _raw("bad.npz", b"PK\x03\x04 broken"), "bad.npz", "could not be read"),
    bad("unsupported_ext", _raw("d.csv", b"1,2,3\n"), "d.csv", ".mat", ".h5", ".npz"),
    bad("missing_variable", _mat("m.mat", spikes=GOOD, t=np.arange(3)),
        "'data'", "spikes", "data.variable"),
    bad("variable_case", _mat("c.mat", Data=GOOD), "no variable 'data'",
        "did you mean 'Data' (--set data.variable=Data)?"),
    bad("npy", _raw("d.npy", b"\x93NUMPY"), "'.npy'", "np.savez(NAME.npz, data=array)"),
    bad("pickle", _raw("d.pkl", b"\x80\x04"), "pickles are never read"),
    bad("wrong_ndim", _mat("w.mat", data=GOOD[:, :, 0]),
        "'data'", "one continuous recording of 8 bins", "3-D array, neurons x time x trials"),
    bad("empty_axis", _npz("e.npz", data=np.zeros((6, 0, 20))), "'data'", "empty", "(6, 0, 20)"),
    bad("nan", _mat("n.mat", data=_with_nan_count(3)), "'data'", "3 NaN/Inf", "(0, 0, 5)"),
    bad("inf", _mat("i.mat", data=_with_value(np.inf)), "'data'", "1 NaN/Inf", "(1, 2, 3)"),
    bad("few_trials", _mat("few.mat", data=_counts(0, (6, 8, 5))),
        "'data'", "only 5 trials", "at least 10"),
    bad("transposed", _mat("t.mat", data=TTN),
        "'data'", "only 6 trials", "--layout trials_time_neurons", "(20, 8, 6)"),
    bad("truth_shape", _mat("ts.mat", data=GOOD, truth=GOOD[:, :, :10]),
        "'truth'", "(6, 8, 10)", "(6, 8, 20)"),
    bad("truth_nan", _mat("tn.mat", data=GOOD, truth=_with_nan_count(1)), "'truth'", "NaN"),
    bad("inds_duplicate",
        _mat("dup.mat", data=GOOD, train_inds=np.r_[TRAIN_1B[:-1], 5], valid_inds=VALID_1B),
        "train_inds/valid_inds", "appears 2 times"),
    bad("inds_missing", _mat("mis.mat", data=GOOD, train_inds=TRAIN_1B[:-1], valid_inds=VALID_1B),
        "train_inds/valid_inds", "missing"),
    bad("inds_range",
        _mat("rng.mat", data=GOOD, train_inds=TRAIN_1B, valid_inds=np.r_[VALID_1B[:-1], 25]),
        "train_inds/valid_inds", "25", "out of range"),
    bad("inds_half", _mat("half.mat", data=GOOD, train_inds=TRAIN_1B),
        "train_inds", "valid_inds", "both"),
    bad("inds_fractional",
        _mat("fr.mat", data=GOOD, train_inds=TRAIN_1B + 0.5, valid_inds=VALID_1B),
        "train_inds", "whole numbers"),
    bad("bad_layout", _with_cfg(_mat("l.mat", data=GOOD), layout="neurons_trials_bins"),
        "neurons_trials_bins", "layout"),
    bad("bad_layout_npz_entry", _npz("l.npz", data=GOOD, layout="time_neurons"),
        "time_neurons", "layout"),
    bad("cell_array", _mat("c.mat", data=np.array([GOOD, GOOD[:2]], dtype=object)),
        "'data'", "cell"),
    bad("bad_bin_size", _mat("bs.mat", data=GOOD, bin_size_ms=-5.0), "bin_size_ms", "positive"),
    bad("h5_missing_valid", _h5("nv.h5", train_data=TTN), "nv.h5", "valid_data", "train_data"),
    bad("h5_shape_mismatch", _h5("sm.h5", train_data=TTN, valid_data=TTN[:5, :, :3]),
        "sm.h5", "must match"),
    bad("h5_inds_count",
        _h5_split("ic.h5", train_inds=np.arange(14), valid_inds=np.arange(14, 20)),
        "ic.h5", "train_inds has 14"),
    bad("h5_layout_setting", _with_cfg(_h5_split("lay.h5"), layout="neurons_time_trials"),
        "lay.h5", "data.layout"),
    bad("mat73_missing_variable", lambda tmp: (write_mat73(tmp / "v.mat", {"spk": GOOD}), None),
        "v.mat", "'data'", "spk"),
]


@pytest.mark.parametrize(("make", "needles"), BAD_CASES)
def test_bad_input_is_one_line_user_error(tmp_path: Path, make: Case, needles: list[str]) -> None:
    path, cfg = make(tmp_path)
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(UserInputError) as info:
        load_dataset(path, cfg)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in: {msg}"
    if before is not None:
        assert path.read_bytes() == before  # the user's file is untouched


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"data": np.zeros((20, 8))}, "3-D"),
        ({"data": np.zeros((20, 8, 6)), "layout": "trials_time"}, "invalid layout"),
        ({"data": TTN, "truth": TTN[:, :, :2]}, "'truth'"),
        ({"data": TTN, "conditions": np.arange(5)}, "'conditions'"),
        ({"data": TTN, "ext_input": np.zeros((20, 7, 2))}, "'ext_input'"),
        ({"data": TTN.astype(str)}, "text"),
        ({"data": TTN, "train_inds": np.arange(16), "valid_inds": np.arange(16, 19)}, "missing"),
    ],
)
def test_from_array_errors(kwargs: dict, needle: str) -> None:
    data = kwargs.pop("data")
    with pytest.raises(UserInputError, match=needle) as info:
        from_array(data, **kwargs)
    assert "\n" not in str(info.value)


def test_from_array_accepts_bool_and_ints() -> None:
    ds = from_array(TTN > 1)
    assert ds.train_data.dtype == np.float32 and set(np.unique(ds.all_data())) <= {0.0, 1.0}
    ds = from_array(TTN.astype(np.uint8), layout="trials_time_neurons")
    np.testing.assert_array_equal(ds.all_data(), TTN)


# ------------------------------------------------------------------------- writing


def test_resuming_a_run_from_before_test_splits_keeps_its_training_trials(tmp_path: Path) -> None:
    from autolfads.config import Config, config_to_yaml, load_config
    from autolfads.data.split import unused_split_settings
    from autolfads.run_start import keep_old_split

    old = tmp_path / "old.yaml"
    old.write_text("data:\n  split: every_nth\n  valid_every: 5\n")
    cfg = load_config(old)
    keep_old_split(cfg, old)
    assert cfg.data.test_every == 0 and cfg.data.test_fraction is None  # its split's key only
    assert len(split_trials(1300, cfg.data)[2]) == 0 and not unused_split_settings(cfg.data)
    old.write_text("data:\n  split: random\n")
    cfg = load_config(old)
    keep_old_split(cfg, old)
    assert cfg.data.test_fraction == 0 and len(split_trials(1300, cfg.data)[2]) == 0
    assert not unused_split_settings(cfg.data)
    new = tmp_path / "new.yaml"
    new.write_text(config_to_yaml(Config()))  # written by this version: the split stays auto
    cfg = load_config(new)
    keep_old_split(cfg, new)
    assert cfg.data.test_every is None and len(split_trials(1300, cfg.data)[2]) == 130


def test_a_file_is_read_as_what_it_is_whatever_its_name(tmp_path):
    """An HDF5 file written from Python but named .mat is not transposed as MATLAB's; a MATLAB
    file named .h5, an .npz named .mat are read as what they are, and the run says so."""
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, size=(40, 12, 7)).astype(float)  # trials x time x neurons
    with h5py.File(tmp_path / "py.mat", "w") as f:  # no MATLAB header, no MATLAB_class
        f["data"] = x
        f["data"].attrs["layout"] = "trials_time_neurons"
    ds = load_dataset(tmp_path / "py.mat")
    np.testing.assert_array_equal(ds.all_data(), x)
    assert any("py.mat: named .mat but is an HDF5 file; read as one (arrays as stored" in w
               for w in ds.meta["warnings"])
    with h5py.File(tmp_path / "tf.mat", "w") as f:  # trials first, and no layout said
        f["data"] = rng.poisson(2.0, size=(40, 12, 25)).astype(float)
    ds = load_dataset(tmp_path / "tf.mat")  # read as the tutorial's order, as an .h5 would be,
    assert ds.n_trials == 25 and any(  # and the transposed look of it is said
        "--layout trials_time_neurons" in w for w in ds.meta["warnings"])
    with h5py.File(tmp_path / "lfads.h5", "w") as f:  # LFADS's names, MATLAB attributes
        f["train_data"], f["valid_data"] = x[:30], x[30:]
        f["train_data"].attrs["MATLAB_class"] = np.bytes_("double")
    assert load_dataset(tmp_path / "lfads.h5").n_trials == 40
    # without its header, MATLAB's own attributes still say it is a .mat (other v7.3 writers)
    m = x.transpose(2, 1, 0)  # neurons x time x trials, as MATLAB holds it
    ds = load_dataset(write_mat73(tmp_path / "plain.mat", {"data": m}, userblock=False))
    np.testing.assert_array_equal(ds.all_data(), x)
    assert not any("named" in w for w in ds.meta.get("warnings", []))
    scipy.io.savemat(tmp_path / "v5.h5", {"data": m})
    ds = load_dataset(tmp_path / "v5.h5")
    np.testing.assert_array_equal(ds.all_data(), x)
    assert any("v5.h5: named .h5 but is a MATLAB .mat file" in w for w in ds.meta["warnings"])
    np.savez(tmp_path / "z.npz", data=m)  # (an .npz without a layout entry: MATLAB's order)
    (tmp_path / "z.npz").rename(tmp_path / "z.mat")
    ds = load_dataset(tmp_path / "z.mat")
    np.testing.assert_array_equal(ds.all_data(), x)
    assert any("named .mat but is a numpy .npz" in w for w in ds.meta["warnings"])


def test_settings_of_the_other_split_are_said_to_do_nothing() -> None:
    from autolfads.config import load_config

    x = np.random.default_rng(0).poisson(1.0, (120, 20, 6)).astype(float)
    ds = from_array(x, cfg=load_config(None, ["data.test_fraction=0.3"]).data)
    assert ("data.test_fraction applies to data.split=random, not every_nth: ignored; use "
            "data.test_every, or --set data.split=random") in ds.meta["warnings"][0]
    assert len(ds.test_inds) == 12  # every 10th, as without the setting
    ds = from_array(x, cfg=load_config(None, ["data.split=random", "data.valid_every=4"]).data)
    assert "data.valid_every applies to data.split=every_nth" in ds.meta["warnings"][0]
    assert not from_array(x).meta.get("warnings")


def test_the_data_may_be_a_field_of_a_matlab_struct(tmp_path: Path) -> None:
    """MATLAB users keep data in structs: data.variable=S.spikes (or S/spikes) reads the field,
    in v5 and v7.3 files; naming the struct itself lists its fields."""
    rng = np.random.default_rng(0)
    m = rng.poisson(1.0, size=(N_NEURONS, N_TIME, N_TRIALS)).astype(float)
    scipy.io.savemat(tmp_path / "v5.mat", {"S": {"spikes": m, "meta": {"rat": 3.0}}})
    with h5py.File(tmp_path / "v73.mat", "w") as f:
        g = f.create_group("S")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        g.create_dataset("spikes", data=m.T).attrs["MATLAB_class"] = np.bytes_("double")
    for name in ("v5.mat", "v73.mat"):
        for variable in ("S.spikes", "S/spikes"):
            ds = load_dataset(tmp_path / name, DataConfig(variable=variable))
            np.testing.assert_array_equal(ds.all_data(), m.transpose(2, 1, 0))
        with pytest.raises(UserInputError, match=r"variable 'S'.*is a struct with fields .*spikes"
                                                 r".*--set data.variable=S\."):
            load_dataset(tmp_path / name, DataConfig(variable="S"))
        with pytest.raises(UserInputError, match=r"struct 'S' has no field 'spike' \(its fields: "):
            load_dataset(tmp_path / name, DataConfig(variable="S.spike"))
    with pytest.raises(UserInputError, match="'S.meta.rat' is not a struct; it has no field 'x'"):
        load_dataset(tmp_path / "v5.mat", DataConfig(variable="S.meta.rat.x"))


def test_a_matlab_object_is_named_as_one(tmp_path: Path) -> None:
    """A table saved with -v7.3 is a handle (uint32) into MATLAB's own storage: not data."""
    with h5py.File(tmp_path / "t.mat", "w") as f:
        d = f.create_dataset("data", data=np.array([[3707764736, 2, 1, 1, 1, 1]], np.uint32))
        d.attrs["MATLAB_class"] = np.bytes_("table")
    with pytest.raises(UserInputError, match="variable 'data': is a MATLAB table object, not an "
                                             r"array; .* table2array"):
        load_dataset(tmp_path / "t.mat")


def test_bins_of_a_second_or_more_are_questioned() -> None:
    x = np.random.default_rng(0).poisson(1.0, (20, 30, 5)).astype(float)
    ds = from_array(x, bin_size_s=10.0)  # dt = 10: milliseconds given as seconds?
    assert any("bins of 10 s: if that is milliseconds, give bin_size_ms" in w
               for w in ds.meta["warnings"])
    assert not from_array(x, bin_size_s=0.01).meta.get("warnings")
