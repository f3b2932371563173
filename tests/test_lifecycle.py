"""A run's life as an audit found it (2026-11-30): stopped by a signal, moved, resumed on other
data, damaged, exported over its own data; each ends in one line that says what happened."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fake_run import make_run

from autolfads.analysis.export import export
from autolfads.config import Config, config_to_yaml, load_config
from autolfads.data.fingerprint import data_fingerprint
from autolfads.data.io import from_array
from autolfads.errors import UserInputError
from autolfads.pbt.resume import check_same_run, relocated, resume_point
from autolfads.rundir.location import Location, atomic_write


def test_writes_that_cannot_happen_are_one_error_line(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(UserInputError, match="cannot write there"):
        atomic_write(blocker / "out.npz", lambda tmp: tmp.write_bytes(b""))


def test_export_never_replaces_the_data_the_run_trained_on(tmp_path):
    run = make_run(tmp_path)
    data = tmp_path / "data.h5"
    before = data.read_bytes()
    with pytest.raises(UserInputError, match="input data file"):
        export(run, "h5", out=data, force=True)
    assert data.read_bytes() == before


def _resumable(tmp_path: Path, old_home: str = "/elsewhere/run") -> Path:
    """A fabricated run interrupted after 3 of 5 generations, its population.json written where
    it once lived (old_home); its checkpoints are in the run directory."""
    run = make_run(tmp_path, finished=False, generations=3)
    members = []
    for w in range(3):
        ckpt = run / "pbt" / "checkpoints" / f"w{w:02d}" / "gen003.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(b"")
        members.append({"worker": w, "hp": {},
                        "checkpoint": f"{old_home}/pbt/checkpoints/w{w:02d}/gen003.pt"})
    (run / "pbt" / "population.json").write_text(json.dumps({"generation": 3,
                                                             "members": members}))
    return run


def test_a_moved_run_resumes_from_its_own_checkpoints(tmp_path):
    run = _resumable(tmp_path)
    point = resume_point(run, str(run), load_config(run / "config.yaml").pbt)
    assert [m["checkpoint"] for m in point.members] == [
        str(run / "pbt" / "checkpoints" / f"w{w:02d}" / "gen003.pt") for w in range(3)]
    assert relocated("gs://b/old/pbt/checkpoints/w01/gen002.pt", "gs://b/new") == \
        "gs://b/new/pbt/checkpoints/w01/gen002.pt"
    os.remove(run / "pbt" / "checkpoints" / "w01" / "gen003.pt")
    with pytest.raises(UserInputError, match="w01/gen003.pt not found; worker 1"):
        resume_point(run, str(run), load_config(run / "config.yaml").pbt)


def test_damaged_logs_stop_a_resume_before_it_starts(tmp_path):
    run = _resumable(tmp_path)
    pbt = load_config(run / "config.yaml").pbt
    hp_log = run / "pbt" / "hp_log.csv"
    lines = hp_log.read_text().splitlines(keepends=True)
    hp_log.write_text("".join(lines[:2]))  # the header and one row: generation 1 only
    with pytest.raises(UserInputError, match="holds 1 generations but the run saved 3"):
        resume_point(run, str(run), pbt)
    (run / "pbt" / "population.json").write_text('{"generation": 3, "memb')
    with pytest.raises(UserInputError, match="population.json: is damaged"):
        resume_point(run, str(run), pbt)


def test_resume_refuses_other_data_and_another_generation_length(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, (30, 20, 8)).astype(np.float32)
    run = tmp_path / "run"
    run.mkdir()
    cfg = Config()
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    ds = from_array(x)
    (run / "run.json").write_text(json.dumps({"data": "/data/a.h5", **data_fingerprint(ds)}))
    store = Location(run)
    check_same_run(store, cfg, ds, "a.h5")  # the same data: fine
    other = from_array(rng.poisson(1.0, (30, 20, 8)).astype(np.float32))
    with pytest.raises(UserInputError, match="same shape, different values.*/data/a.h5"):
        check_same_run(store, cfg, other, "b.h5")
    with pytest.raises(UserInputError, match=r"30 x 20 x 9 .* against the run's 30 x 20 x 8"):
        check_same_run(store, cfg, from_array(x[:, :, :1].repeat(9, 2)), "c.h5")
    longer = cfg.model_copy(deep=True)
    longer.pbt.epochs_per_generation = cfg.pbt.epochs_per_generation + 5
    with pytest.raises(UserInputError, match="generations are 25 epochs each"):
        check_same_run(store, longer, ds, "a.h5")
