"""More of the CLI contract, from an audit of what users bring: usage mistakes, data on the wrong
scale, files that are almost right. Each is one `error:` line (exit 2) or a `warning:` line."""

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from conftest import run_cli

from autolfads.api import device_here
from autolfads.data.io import load_dataset
from autolfads.inputs import data_lines


def counts(shape=(10, 20, 30), seed=0):
    return np.random.default_rng(seed).poisson(1.0, size=shape).astype(float)


def one_error(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("args, words", [
    (["train", "x.mat"], ["Missing option '--out'", "autolfads train --help"]),
    (["trian"], ["No such command 'trian'", "Did you mean 'train'"]),
    (["train", "--out", "r", "--epoch", "3"], ["No such option: --epoch", "--epochs"]),
    (["train", "--out", "r", "--epochs", "0"], ["--epochs 0", "greater than or equal to 1"]),
    (["train", "--out", "gs://lab/run"], ["gs://lab/run", "autolfads run"]),
    (["train", "--out", "r", "--set", "modle.gen_dim=3"], ["did you mean model?"]),
    (["train", "--out", "r", "--set", "train.device=gpu"], ["train.device", "auto|cpu|cuda"]),
    (["run", "--out", "r", "--set", "train.device=cuda"], ["train.device=cuda",
                                                           "--workers-per-gpu"]),
    (["run", "--out", "r", "--workers-per-gpu", "3", "--set", "train.device=cpu"],
     ["--workers-per-gpu 3 with train.device=cpu", "train on CPUs"]),
])
def test_command_line_mistakes_are_one_line(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_error(*run_cli(monkeypatch, capsys, *args)[::2], *words)
    assert not (tmp_path / "r").exists() and not (tmp_path / "gs:").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_that_is_not_there_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "train", "--out", "r", "--set",
                           "train.device=cuda:1")
    one_error(code, err, "train.device=cuda:1", "CUDA is not available here")
    assert not (tmp_path / "r").exists()
    said = []
    assert device_here("cuda", said.append) == "cpu"  # a PBT driver samples where it is
    assert "not available on this machine" in said[0]
    assert device_here("auto", said.append) == "auto" and len(said) == 1


def test_bare_command_prints_the_help(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys)
    assert code == 0 and "train" in out + err and "Traceback" not in out + err


def files(tmp):
    """(name, path, words in the error)."""
    x = counts()

    def mat(name, **v):
        scipy.io.savemat(tmp / f"{name}.mat", v)
        return tmp / f"{name}.mat"

    fake = tmp / "fake.nwb"
    with h5py.File(fake, "w") as f:
        f["data"] = x
    ragged = tmp / "ragged.npz"
    np.savez(ragged, data=np.array([np.ones((5, 3)), np.ones((6, 3))], dtype=object))
    cond = np.arange(30.0)
    cond[4] = np.nan
    return [
        ("tiny values", mat("tiny", data=(x + 0.5) * 1e-12), ["too small", "multiply it by 1e+12"]),
        ("huge values", mat("huge", data=x * 1e20 - 5e19), ["too large", "float32"]),
        ("outlier", mat("outlier", data=np.where(x > 4, 3e11, x + 0.5)),
         ["an outlier or a missing-data code"]),
        ("not nwb", fake, ["could not be read as NWB"]),
        ("ragged npz", ragged, ["object array", "np.stack"]),
        ("nan condition", mat("cond", data=x, conditions=cond), ["without a label", "trial 4"]),
        ("nan behaviour", mat("beh", data=x, behavior=np.full((30, 20, 2), np.nan)),
         ["'behavior' (decode targets)", "NaN", "index (0, 0, 0)"]),
        ("config is data", tmp / "x.mat", ["YAML"]),
        ("config key twice", tmp / "twice.yaml", ["key 'model' appears twice", "line 5"]),
        ("config list key", tmp / "listkey.yaml", ["not valid YAML", "line 1"]),
    ]


@pytest.mark.parametrize("case", ["tiny values", "huge values", "outlier", "not nwb",
                                  "ragged npz",
                                  "nan condition", "nan behaviour", "config is data",
                                  "config key twice", "config list key"])
def test_files_that_are_almost_right(case, tmp_path, monkeypatch, capsys):
    name, path, words = next(c for c in files(tmp_path) if c[0] == case)
    args = ["train", path, "--out", tmp_path / "run", "--epochs", "1"]
    if case == "config is data":
        scipy.io.savemat(path, {"data": counts()})
        args = ["train", path, "--config", path, "--out", tmp_path / "run"]
    if case == "config key twice":  # YAML would keep the second model: section in silence
        path.write_text("model:\n  gen_dim: 32\ntrain:\n  lr: 0.001\nmodel:\n  fac_dim: 8\n")
        args = ["train", "--config", path, "--out", tmp_path / "run"]
    if case == "config list key":  # a key YAML cannot hash: YAML's own error, not a traceback
        path.write_text("? [a, b]\n: 1\n")
        args = ["train", "--config", path, "--out", tmp_path / "run"]
    one_error(*run_cli(monkeypatch, capsys, *args)[::2], *words)


def test_warnings_for_what_a_run_can_survive(tmp_path):
    """Trials-first data read in the tutorial's order, an .h5 holding one array, a -1 among
    counts, and NWB-only settings on another format: each a warning line, not a refusal."""
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f["data"] = counts((40, 20, 12))  # trials x time x neurons, as Python users save
    ds = load_dataset(tmp_path / "one.h5")
    assert (ds.n_trials, ds.n_neurons) == (12, 40)  # the documented default order...
    warn = [ln for ln in data_lines(ds, []) if ln.startswith("warning:")]
    layout = [w for w in warn if "--layout trials_time_neurons" in w]  # ...said out loud,
    assert len(layout) == 1 and len(warn) == 2  # and its 2 validation trials of 12
    from autolfads.config import DataConfig

    fixed = load_dataset(tmp_path / "one.h5", DataConfig(layout="trials_time_neurons"))
    assert fixed.n_trials == 40 and not fixed.meta.get("warnings")
    x = counts()
    x[3, 4, 5] = -1
    scipy.io.savemat(tmp_path / "neg.mat", {"data": x})
    from autolfads.model.observations.choose import warnings

    lines = warnings("gaussian", load_dataset(tmp_path / "neg.mat").all_data())
    assert len(lines) == 1 and "missing data" in lines[0] and "-1" in lines[0]
    assert warnings("gaussian", counts()) == []  # counts modelled as gaussian, as asked
    scipy.io.savemat(tmp_path / "tut.mat", {"data": counts((40, 20, 12))})  # 40 neurons
    said = load_dataset(tmp_path / "tut.mat").meta.get("warnings", [])
    assert not [w for w in said if "--layout" in w]  # .mat: the tutorial's order by design
    nwb_only = load_dataset(tmp_path / "neg.mat", DataConfig(window_ms=[0, 100]))
    assert nwb_only.meta["warnings"] == ["data.window_ms: only NWB files use it; ignored for "
                                         "neg.mat"]


def test_deconvolve_checks_its_options_before_the_work(tmp_path, monkeypatch, capsys):
    traces = np.random.default_rng(0).gamma(2.0, 0.1, size=(10, 30, 20))
    scipy.io.savemat(tmp_path / "ca.mat", {"data": traces})
    base = ["deconvolve", tmp_path / "ca.mat", "--bin-size-ms", "33"]
    one_error(*run_cli(monkeypatch, capsys, *base, "--out", tmp_path / "e.npz")[::2],
              "*.h5", "*.mat")
    one_error(*run_cli(monkeypatch, capsys, *base, "--out", tmp_path / "e.h5",
                       "--tau-decay-s", "0")[::2], "--tau-decay-s", "positive")
    one_error(*run_cli(monkeypatch, capsys, *base, "--out", tmp_path / "e.h5",
                       "--threshold-sd", "-1")[::2], "--threshold-sd")
    one_error(*run_cli(monkeypatch, capsys, "deconvolve", tmp_path / "ca.mat", "--out",
                       tmp_path / "e.h5", "--bin-size-ms", "0")[::2], "--bin-size-ms")
    scipy.io.savemat(tmp_path / "flat.mat", {"data": np.full((10, 30, 20), 2.0)})
    code, _, err = run_cli(monkeypatch, capsys, "deconvolve", tmp_path / "flat.mat", "--out",
                           tmp_path / "f.h5", "--bin-size-ms", "33")
    assert code == 2 and "no events in any channel" in err
    assert not list(tmp_path.glob("*.h5"))  # nothing written
