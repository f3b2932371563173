"""`autolfads status` (live/finished, local/fsspec URIs) and `autolfads export` (round trips,
MATLAB layout and 1-based indices, no overwrite without --force), and Octave reading the .mat."""

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import run_cli
from fake_run import HP_NAMES, make_run

from autolfads.analysis.metrics import r2_rates


def one_error_line(code, err, *words):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished AutoLFADS run (read only: tests that write use --out elsewhere)."""
    return make_run(tmp_path_factory.mktemp("finished"), generations=3)


# ---------------------------------------------------------------------- status


def test_status_of_a_finished_run(finished, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "status", finished)
    assert code == 0, err
    assert "AutoLFADS run, finished; generation 3 of at most 5, population 3" in out
    assert "population, generation 3" in out
    for col in ("gen", "worker", "score", *HP_NAMES, "exploited from"):
        assert col in out
    assert "best so far: worker" in out
    assert "stopped: reached the maximum of 3 generations" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("│   3 │")]
    assert len(rows) == 3 and sum("*" in r for r in rows) == 1  # the best worker is starred

    code, out, _ = run_cli(monkeypatch, capsys, "status", finished, "--all")
    assert code == 0
    assert sum(ln.startswith("│   ") for ln in out.splitlines()) == 9  # 3 generations x 3
    assert out.count("worker 2 (") + out.count("worker 1 (") + out.count("worker 0 (") >= 2


def test_status_of_a_live_run(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path, finished=False, generations=5, population=4, partial_line=True,
                   skip_last_decisions=True)
    code, out, err = run_cli(monkeypatch, capsys, "status", run)
    assert code == 0, err
    # a partial line is skipped
    assert "interrupted: --resume); generation 5 of at most 5, population 4" in out
    assert out.count("(pending)") == 4  # decisions of the latest generation not logged yet
    assert "stop rule: best improved by" in out and "over the last 4 generations" in out

    early = make_run(tmp_path / "early", finished=False, generations=2)
    code, out, _ = run_cli(monkeypatch, capsys, "status", early)
    assert "measured from generation 5 on (now 2)" in out

    (early / "pbt" / "hp_log.csv").unlink()
    code, out, _ = run_cli(monkeypatch, capsys, "status", early)
    assert code == 0 and "no generation has finished yet" in out and "failures" not in out
    # why a run is stuck: its last failures
    (early / "pbt" / "events.log").write_text("".join(
        f"2026-01-01 00:00:0{i}  worker {i} failed (failure 1 ...): boom {i}\n" for i in range(5)))
    code, out, _ = run_cli(monkeypatch, capsys, "status", early)
    assert "failures and restarts (pbt/events.log, the last 3 of 5):" in out
    assert "boom 4" in out and "boom 2" in out and "boom 1" not in out


NO_RAY = """
import sys
from autolfads.cli import main
sys.argv = ["autolfads", "status", sys.argv[1]]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
assert "ray" not in sys.modules, "autolfads status imported Ray"
"""


def test_status_never_imports_ray(tmp_path):
    """`status` reads the stop rule from pbt/stop_rule.py, not from the Ray stopper: it runs on a
    laptop without Ray started (or installed), and starts in a fraction of Ray's import time."""
    for module in ("autolfads.analysis.status", "autolfads.pbt.stop_rule"):
        code = f"import sys, {module}; assert 'ray' not in sys.modules"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    run = make_run(tmp_path, finished=False, generations=5, population=3)
    done = subprocess.run([sys.executable, "-c", NO_RAY, str(run)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "not finished (running, or interrupted: --resume); generation 5 of" in done.stdout
    assert "stop rule: best improved by" in done.stdout


def test_status_of_a_train_only_run(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path, pbt=False)
    code, out, err = run_cli(monkeypatch, capsys, "status", run)
    assert code == 0, err
    assert "single LFADS model" in out and "6 of at most" in out
    assert "final: valid_recon" in out and "r2_rates" in out


def test_status_reads_uris_through_fsspec(finished, monkeypatch, capsys):
    import fsspec

    fs = fsspec.filesystem("memory")
    for path in finished.rglob("*"):
        if path.is_file() and "report" not in path.parts:
            fs.pipe(f"/runs/r1/{path.relative_to(finished)}", path.read_bytes())
    code, out, err = run_cli(monkeypatch, capsys, "status", "memory://runs/r1")
    assert code == 0, err
    assert "memory://runs/r1: AutoLFADS run, finished" in out and "best so far" in out
    code, _, err = run_cli(monkeypatch, capsys, "status", "memory://runs/none")
    one_error_line(code, err, "memory://runs/none", "not found")


def test_status_turns_a_storage_failure_into_one_line(monkeypatch, capsys):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/runs/denied/config.yaml", b"pbt: {}\n")

    def denied(self, path, *args, **kwargs):  # e.g. a bucket the credentials cannot read
        raise PermissionError("403 Forbidden")

    monkeypatch.setattr(type(fs), "cat_file", denied)
    code, _, err = run_cli(monkeypatch, capsys, "status", "memory://runs/denied")
    one_error_line(code, err, "memory://runs/denied", "cannot read", "credentials")


def test_status_names_the_missing_cloud_package(monkeypatch, capsys):
    import fsspec

    def no_backend(url, **kw):  # as fsspec does without gcsfs; never touches the network
        raise ImportError("Please install gcsfs to access Google Storage")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_backend)
    code, _, err = run_cli(monkeypatch, capsys, "status", "gs://bucket/run")
    one_error_line(code, err, "gs://bucket/run", "gcsfs", "pip install")


@pytest.mark.parametrize("case, words", [
    ("missing", ["not found"]), ("not a run", ["not an autolfads run directory"])])
def test_status_errors(tmp_path, monkeypatch, capsys, case, words):
    target = tmp_path / "nope" if case == "missing" else tmp_path
    code, _, err = run_cli(monkeypatch, capsys, "status", target)
    one_error_line(code, err, *words)


# ---------------------------------------------------------------------- export


def expected(run):
    with h5py.File(run / "output" / "lfads_output.h5") as f:
        return {k: f[k][()] for k in f}


def test_export_mat_round_trip(finished, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mine.mat"
    code, stdout, err = run_cli(monkeypatch, capsys, "export", finished, "--format", "mat",
                                "--out", out)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out}"
    h5 = expected(finished)
    mat = scipy.io.loadmat(out)
    k, t, n = h5["rates"].shape
    assert mat["rates"].shape == (n, t, k)  # neurons x time x trials
    assert mat["factors"].shape == (6, t, k) and mat["inferred_inputs"].shape == (2, t, k)
    assert mat["ic_mean"].shape == (8, k) and mat["truth"].shape == (n, t, k)
    # 1-based indices, and trial j of the .mat is trial j of the user's data
    np.testing.assert_array_equal(mat["train_inds"].ravel(), h5["train_inds"] + 1)
    np.testing.assert_array_equal(mat["valid_inds"].ravel(), h5["valid_inds"] + 1)
    assert mat["valid_inds"].ravel()[0] == 5  # every 5th trial, counted from 1
    for j in (0, 4, 39):
        np.testing.assert_allclose(mat["rates"][:, :, j], h5["rates"][j].T)
    # the fake rates are truth * (1 + trial / 100): the original order is the data's order
    ratio = mat["rates"].mean(axis=(0, 1)) / mat["truth"].mean(axis=(0, 1))
    np.testing.assert_allclose(ratio, 1 + np.arange(k) / 100, rtol=1e-5)
    v = h5["valid_inds"][1]
    np.testing.assert_allclose(mat["rates"][:, :, v], h5["valid_rates"][1].T)
    np.testing.assert_array_equal(mat["conditions"].ravel(), np.arange(k) % 4 + 1)
    assert float(mat["bin_size_ms"].ravel()[0]) == pytest.approx(10.0)


def test_export_h5_and_npz_round_trip(finished, tmp_path):
    from autolfads.analysis.export import export

    h5 = expected(finished)
    out = export(finished, "h5", tmp_path / "copy.h5")
    with h5py.File(out) as f, h5py.File(finished / "output" / "lfads_output.h5") as g:
        assert set(f) == set(g)
        for key in f:
            np.testing.assert_array_equal(f[key][()], g[key][()])
        assert dict(f.attrs) == dict(g.attrs)
    npz = np.load(export(finished, "npz", tmp_path / "copy.npz"))
    for key, arr in h5.items():
        np.testing.assert_array_equal(npz[key], arr)  # trials first, 0-based indices
    assert str(npz["layout"]) == "trials_time_neurons" and float(npz["bin_size_ms"]) == 10.0
    # the default place is beside the other outputs
    default = export(finished, "npz")
    assert default == finished / "output" / "lfads_output.npz"
    default.unlink()


def test_export_from_a_uri_and_from_the_mat_alone(finished, tmp_path):
    import fsspec

    from autolfads.analysis.export import export

    fs = fsspec.filesystem("memory")
    fs.pipe("/exp/r/config.yaml", (finished / "config.yaml").read_bytes())
    fs.pipe("/exp/r/output/lfads_output.mat",
            (finished / "output" / "lfads_output.mat").read_bytes())
    out = export("memory://exp/r", "npz", tmp_path / "from_mat.npz")
    h5, npz = expected(finished), np.load(out)
    for key in ("rates", "factors", "inferred_inputs", "ic_mean", "train_inds", "valid_inds",
                "valid_rates"):
        np.testing.assert_allclose(npz[key], h5[key], rtol=1e-6)


def test_export_never_overwrites_without_force(finished, tmp_path, monkeypatch, capsys):
    out = tmp_path / "keep.mat"
    out.write_bytes(b"user's file")
    code, _, err = run_cli(monkeypatch, capsys, "export", finished, "--format", "mat", "--out",
                           out)
    one_error_line(code, err, str(out), "exists", "--force")
    assert out.read_bytes() == b"user's file"
    code, _, err = run_cli(monkeypatch, capsys, "export", finished, "--format", "mat", "--out",
                           out, "--force")
    assert code == 0, err
    assert scipy.io.loadmat(out)["rates"].shape == (8, 15, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mat"]  # no temp file left
    # the default target exists already (the run wrote it): refused, untouched
    before = (finished / "output" / "lfads_output.mat").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "export", finished, "--format", "mat")
    one_error_line(code, err, "lfads_output.mat", "exists")
    assert (finished / "output" / "lfads_output.mat").read_bytes() == before


def test_export_errors(finished, tmp_path, monkeypatch, capsys):
    import fsspec

    live = make_run(tmp_path / "live", finished=False, generations=1)
    fsspec.filesystem("memory").pipe("/exp/remote/config.yaml", b"pbt: {}\n")
    cases = [
        (["export", finished, "--format", "xls"], ["--format xls", "mat, h5, npz"]),
        (["export", finished, "--format", "mat", "--out", tmp_path / "x.h5"], [".mat"]),
        (["export", finished, "--format", "npz", "--out", tmp_path], ["does not end in .npz"]),
        (["export", live, "--format", "mat", "--out", tmp_path / "x.mat"], ["no outputs yet"]),
        (["export", tmp_path / "nope", "--format", "mat"], ["not found"]),
        (["export", "memory://exp/remote", "--format", "mat"], ["needs --out"]),
        (["export", finished, "--format", "mat", "--out", "s3://b/x.mat"], ["local file"]),
    ]
    for args, words in cases:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        one_error_line(code, err, *words)
    assert not (tmp_path / "x.mat").exists() and not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------------- MATLAB readers

# The tutorial's compare_rates.m: R^2 of inferred against true rates over every entry.
OCTAVE_R2 = """
d = load('{path}');
assert(isequal(size(d.rates), [{n} {t} {k}]));
assert(min(d.valid_inds) == 5 && min(d.train_inds) == 1);
c = corrcoef(d.rates(:), d.truth(:));
printf('%.10f\\n', c(1, 2)^2);
"""


def test_mat_output_gives_the_tutorials_r2_in_scipy(finished):
    mat = scipy.io.loadmat(finished / "output" / "lfads_output.mat")
    c = np.corrcoef(mat["rates"].ravel(order="F"), mat["truth"].ravel(order="F"))
    h5 = expected(finished)
    assert c[0, 1] ** 2 == pytest.approx(r2_rates(h5["rates"], h5["truth"]), rel=1e-6)


@pytest.mark.skipif(shutil.which("octave") is None,
                    reason="GNU Octave is not installed (Debian package `octave`); the .mat "
                           "layout is checked with scipy in the test above")
def test_octave_loads_the_mat_output_and_computes_the_r2(finished, tmp_path):
    path = finished / "output" / "lfads_output.mat"
    h5 = expected(finished)
    k, t, n = h5["rates"].shape
    script = OCTAVE_R2.format(path=path, n=n, t=t, k=k)
    proc = subprocess.run(["octave", "--no-gui", "--quiet", "--eval", script],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r2 = float(proc.stdout.strip().splitlines()[-1])
    assert r2 == pytest.approx(r2_rates(h5["rates"], h5["truth"]), rel=1e-5)
