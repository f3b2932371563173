"""The CLI contract: one `error:` line and exit status 2 for every bad input; files written."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from conftest import run_cli


def good_counts(n=29, t=20, k=30, seed=0):
    return np.random.default_rng(seed).poisson(1.0, size=(n, t, k)).astype(float)


def bad_inputs(tmp):
    """(case name, path to give the CLI, words the message must contain[, extra CLI args])."""
    cases = []

    def mat(name, **variables):
        p = tmp / f"{name}.mat"
        scipy.io.savemat(p, variables)
        return p

    cases.append(("missing file", tmp / "nope.mat", ["nope.mat", "not found"]))
    cases.append(("missing variable", mat("novar", spikes=good_counts()), ["'data'", "spikes"]))
    cases.append(("wrong ndim", mat("ndim", data=np.ones((29, 20))),
                  ["3", "neurons x time x trials"]))
    cases.append(("empty", mat("empty", data=np.zeros((29, 0, 30))), ["empty"]))
    nan = good_counts()
    nan[3, 4, 5] = np.nan
    cases.append(("nan", mat("nan", data=nan), ["NaN"]))
    inf = good_counts()
    inf[0, 0, 0] = np.inf
    cases.append(("inf", mat("inf", data=inf), ["Inf"]))
    neg = good_counts()
    neg[1, 2, 3] = -1
    # What values are allowed depends on the observation model (auto picks one that fits).
    gamma = ["--set", "model.observation=gamma"]
    cases.append(("negative", mat("neg", data=neg), ["negative", "gaussian"], gamma))
    frac = good_counts()
    frac[1, 2, 3] = 2.5
    cases.append(("non-integer", mat("frac", data=frac), ["integer", "2.5", "gamma"],
                  ["--set", "model.observation=poisson"]))
    zeros = good_counts() + 0.5
    zeros[1, 2, 3] = 0.0
    cases.append(("zeros for gamma", mat("zeros", data=zeros), ["zero", "zero_inflated_gamma"],
                  gamma))
    silent = good_counts() + 0.5
    silent[:, :, 4] = 0.0  # neurons x time x trials: neuron 4 is zero throughout trial 4 only
    silent[7] = 0.0
    cases.append(("all-zero channel", mat("silent", data=silent), ["channel", "7", "zero"],
                  ["--set", "model.observation=zero_inflated_gamma"]))
    cases.append(("all zero", mat("allzero", data=np.zeros((29, 20, 30))), ["every value"]))
    cases.append(("too few bins", mat("bins", data=good_counts(t=3)),
                  ["only 3 bins", "at least 5", "--layout"]))
    cases.append(("too few trials", mat("few", data=good_counts(n=5, t=8, k=6)), ["trials", "10"]))
    cases.append(("transposed", mat("transposed", data=good_counts(n=300, t=20, k=5)),
                  ["only 5 trials", "--layout"]))
    bad_ext = tmp / "data.csv"
    bad_ext.write_text("1,2,3\n")
    cases.append(("unsupported format", bad_ext, [".csv"]))
    corrupt = tmp / "corrupt.mat"
    corrupt.write_bytes(b"this is not a mat file at all" * 10)
    cases.append(("corrupt", corrupt, ["corrupt.mat"]))
    return cases


CASE_NAMES = ["missing file", "missing variable", "wrong ndim", "empty", "nan", "inf", "negative",
              "non-integer", "zeros for gamma", "all-zero channel", "all zero", "too few bins",
              "too few trials",
              "transposed", "unsupported format", "corrupt"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_gives_one_error_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    name, path, words, *extra = next(c for c in bad_inputs(tmp_path) if c[0] == case)
    before = path.read_bytes() if path.exists() else None
    code, _, err = run_cli(monkeypatch, capsys, "train", path, "--out", tmp_path / "run",
                           "--epochs", "1", *(extra[0] if extra else []))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing created for a failed start
    if before is not None:
        assert path.read_bytes() == before  # the user's file is untouched


@pytest.mark.parametrize("args,words", [
    (["--set", "model.gen_dimm=3"], ["model.gen_dimm", "unknown"]),
    (["--set", "train.lr=-1"], ["train.lr"]),
    (["--set", "nonsense"], ["section.key=value"]),
    (["--config", "missing.yaml"], ["missing.yaml", "not found"]),
])
def test_bad_config_gives_one_error_line(args, words, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "train", "--out", tmp_path / "run", *args)
    assert code == 2
    line = err.strip()
    assert "\n" not in line and line.startswith("error: ")
    assert all(w in line for w in words), line
    assert "--set / --set" not in line, line  # the source is named once


def test_existing_run_dir_is_not_overwritten(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("mine")
    code, _, err = run_cli(monkeypatch, capsys, "train", "--out", out, "--epochs", "1")
    assert code == 2 and "holds files that are not an autolfads run (notes.txt)" in err
    assert "--force" not in err  # the fix people copy is never the one that deletes
    code, _, err = run_cli(monkeypatch, capsys, "train", "--out", out, "--epochs", "1", "--force")
    assert code == 2 and "not an autolfads run" in err  # --force never deletes foreign files
    assert keep.read_text() == "mine"


def test_entry_point_runs_as_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autolfads.cli", "train", str(tmp_path / "x.mat"),
         "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_run_guards_its_run_directory(tmp_path, monkeypatch, capsys):
    """`autolfads run` never replaces a directory without --force and never resumes nothing."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", out, "--population", "2")
    assert code == 2 and "not an autolfads run (mine.txt)" in err and "--force" not in err
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", out, "--resume", "--force")
    assert code == 2 and "choose one" in err
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "none", "--resume")
    assert code == 2 and "no autolfads run" in err
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "r2",
                           "--set", "pbt.search_space.lr.low=1", "--set",
                           "pbt.search_space.lr.high=0.1")
    assert code == 2 and err.startswith("error: pbt.search_space.lr") and "\n" not in err.strip()
    assert (out / "mine.txt").read_text() == "keep" and len(list(out.iterdir())) == 1
    for address, words in (("127.0.0.1:1", "no Ray cluster answers"), ("nonsense", "HOST:PORT")):
        code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "r3",
                               "--address", address)
        assert code == 2 and words in err and err.count("\n") == 1, err
        assert not (tmp_path / "r3").exists()  # nothing created for a run that cannot start


def test_failed_run_is_one_error_line(tmp_path, monkeypatch, capsys):
    """Workers that all crash end the run with one `error:` line (exit 1), not a traceback."""
    import autolfads.api
    from autolfads.errors import RunFailed

    def crash(*args, **kwargs):
        raise RunFailed("AutoLFADS workers failed: ValueError('boom')")

    monkeypatch.setattr(autolfads.api, "run", crash)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "r")
    assert code == 1 and err == "error: AutoLFADS workers failed: ValueError('boom')\n"


@pytest.mark.parametrize("make,words", [
    (lambda c: np.where(np.arange(29)[:, None, None] == 3, 0.0, c), ["1 of 29 neurons never spike",
                                                                     "0-based: 3"]),
    (lambda c: (c * (np.random.default_rng(1).random(c.shape) < 0.005)).round(),
     ["very sparse data", "spikes per bin"]),
])
def test_data_that_shows_little_is_trained_with_a_warning_line(make, words, tmp_path,
                                                               monkeypatch, capsys):
    path = tmp_path / "d.mat"
    scipy.io.savemat(path, {"data": make(good_counts())})
    code, _, err = run_cli(monkeypatch, capsys, "train", path, "--out", tmp_path / "run",
                           "--epochs", "1", "--set", "train.n_samples=2")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any(all(w in line for w in words) for line in warnings), err


@pytest.mark.parametrize("raised", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory:"
                 " you tried to allocate 120000000000 bytes"),
    MemoryError("Unable to allocate 89.4 GiB for an array"),
])
def test_running_out_of_memory_is_one_line_with_the_fix(raised, tmp_path, monkeypatch, capsys):
    from autolfads import api

    def train(*a, **k):
        raise raised

    monkeypatch.setattr(api, "train", train)
    code, _, err = run_cli(monkeypatch, capsys, "train", "--out", tmp_path / "r")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: out of memory (")
    assert "model.gen_dim" in err and "train.batch_size" in err


def test_other_runtime_errors_still_show_their_traceback(tmp_path, monkeypatch, capsys):
    from autolfads import api

    def train(*a, **k):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(api, "train", train)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        run_cli(monkeypatch, capsys, "train", "--out", tmp_path / "r")


def test_the_config_names_the_cluster_of_a_run(tmp_path, monkeypatch, capsys):
    """DESIGN's `cluster` section: cluster.address is --address from a config file."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("cluster:\n  address: 127.0.0.1:1\n")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "r", "--config", cfg)
    assert code == 2 and "cluster.address 127.0.0.1:1: no Ray cluster answers there" in err
    assert not (tmp_path / "r").exists()  # said before anything is written
