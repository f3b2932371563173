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


_MIRRORS = "autolfads-run-*"
_before = pytest.StashKey[set]()  # the mirrors there were when the suite started


def _mirrors() -> set[str]:
    import glob
    import tempfile

    return set(glob.glob(f"{tempfile.gettempdir()}/{_MIRRORS}"))


def pytest_sessionstart(session):
    """Runs into a (test) bucket keep a local mirror in the temp directory, which a user is
    told about; the suite removes its own when it ends. Under pytest-xdist only the controller
    does, after every worker has finished (a worker could remove one another is using)."""
    if not hasattr(session.config, "workerinput"):
        session.config.stash[_before] = _mirrors()


def pytest_sessionfinish(session):
    import shutil

    before = session.config.stash.get(_before, None)
    if before is not None:
        for path in _mirrors() - before:
            shutil.rmtree(path, ignore_errors=True)
