import numpy as np
import pytest
import torch

from autolfads.config import Config
from autolfads.data.dataset import Dataset

TINY_MODEL = dict(ic_enc_dim=12, ci_enc_dim=12, con_dim=12, co_dim=2, ic_dim=8, gen_dim=16,
                  fac_dim=6)


def tiny_dataset(n_trials=40, T=15, N=8, seed=0) -> Dataset:
    """Poisson counts from smooth, trial-specific rates (with truth), split every 5th trial."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, T)
    phase = rng.uniform(0, 2 * np.pi, size=(n_trials, 1, 1))
    gain = rng.uniform(0.5, 1.5, size=(1, 1, N))
    rates = np.exp(np.sin(2 * np.pi * t[None, :, None] + phase) * gain).astype(np.float32)
    spikes = rng.poisson(rates).astype(np.float32)
    valid = np.arange(4, n_trials, 5)
    train = np.setdiff1d(np.arange(n_trials), valid)
    return Dataset(spikes[train], spikes[valid], train, valid, rates[train], rates[valid],
                   source="tiny test data")


def tiny_config(**train) -> Config:
    cfg = Config()
    for k, v in TINY_MODEL.items():
        setattr(cfg.model, k, v)
    cfg.train.batch_size = 16
    cfg.train.kl_increase_epochs = 2
    cfg.train.l2_increase_epochs = 2
    cfg.train.n_samples = 4
    cfg.train.device = "cpu"  # on a machine with a GPU too: the GPU path has its own tests
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(autouse=True)
def no_live_report(request, monkeypatch):
    """A run refreshes its HTML report when it ends (and after each generation): ~5 s of
    figures per run, which most tests never look at. The report has its own tests
    (test_report.py, fabricated runs); tests that read the page a run wrote are marked
    live_report. Runs in a subprocess are not affected."""
    if request.node.get_closest_marker("live_report") is None:
        from autolfads import api

        monkeypatch.setattr(api, "_refresh_report", lambda *a, **k: None)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return tiny_dataset()


def run_cli(monkeypatch, capsys, *args, stdin: str = "") -> tuple[int, str, str]:
    """Run the `autolfads` entry point in-process: (exit status, stdout, stderr)."""
    import io
    import sys

    from autolfads.cli import main

    monkeypatch.setattr(sys, "argv", ["autolfads", *map(str, args)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def pytest_configure(config):
    """Under pytest-xdist each worker gets its own temp directory (short, under /tmp: Ray's Unix
    socket paths must stay under 107 bytes), so one worker's clean-up below never removes a
    mirror or a Ray session that another worker is still using. Subprocesses inherit it."""
    import os
    import tempfile

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not os.environ.get("AUTOLFADS_TEST_TMP"):
        own = tempfile.mkdtemp(prefix=f"alf-{worker}-", dir="/tmp")
        os.environ["AUTOLFADS_TEST_TMP"] = os.environ["TMPDIR"] = own
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


@pytest.fixture(autouse=True, scope="session")
def _no_bucket_mirrors_left():
    """Runs into a (test) bucket keep a local mirror in the temp directory, which a user is
    told about; the suite's own mirrors are removed when it ends (with the worker's own temp
    directory under pytest-xdist)."""
    import glob
    import os
    import shutil
    import tempfile

    pattern = f"{tempfile.gettempdir()}/autolfads-run-*"
    before = set(glob.glob(pattern))
    yield
    for path in set(glob.glob(pattern)) - before:
        shutil.rmtree(path, ignore_errors=True)
    own = os.environ.get("AUTOLFADS_TEST_TMP")
    if own and os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(own, ignore_errors=True)
