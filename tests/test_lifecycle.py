"""A run's life as an audit found it (2026-11-30): stopped by a signal, moved, resumed on other
data, damaged, exported over its own data; each ends in one line that says what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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

CLI = [sys.executable, "-c", "from autolfads.cli import main; main()"]


def test_sigterm_stops_train_as_ctrl_c_does_and_resume_continues_it(tmp_path):
    """Exit status 130, 'interrupted' and how to continue (typer returned 130, which was taken
    for success); --resume then finishes the training from its last epoch."""
    out = tmp_path / "run"
    args = [*CLI, "train", "--out", str(out), "--set", "train.epochs=400",
            "--set", "model.gen_dim=16", "--set", "model.con_dim=8", "--set", "train.n_samples=1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    deadline = time.time() + 120
    line = ""
    while "epoch    1/400" not in line and time.time() < deadline:
        line = proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    assert not (out / "metrics.json").exists()
    done = int(err.split("interrupted after epoch ")[1].split(";")[0])
    assert done >= 1 and f"continue with: autolfads train --out {out} --resume" in err
    # The same --out without --resume: refused, with the way to continue.
    again = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode != 0 and "--resume to continue the run there" in again.stderr
    resumed = subprocess.run([*CLI, "train", "--out", str(out), "--resume", "--epochs",
                              str(done + 1)], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"continuing on cpu after epoch {done} of up to {done + 1}" in resumed.stderr
    assert f"epoch {done + 1:>4}/{done + 1}" in resumed.stderr
    assert (out / "metrics.json").exists() and not (out / "model" / "train_state.pt").exists()
    assert len((out / "train_log.csv").read_text().splitlines()) == 1 + done + 1


def test_an_out_folder_left_before_the_first_epoch_can_be_used_again(tmp_path):
    from autolfads.results import prepare_run_dir

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("train: {}\n")
    (out / "run.json").write_text("{}")
    assert prepare_run_dir(out) == out  # no --force needed: nothing there to lose


def test_a_resumed_training_is_the_training_that_was_not_interrupted(tmp_path, monkeypatch):
    """Model, optimizer, early-stopping state and random streams all continue: the resumed
    training's epochs are those of the one that ran through."""
    from autolfads import api
    from autolfads.training.loop import Trainer

    x = np.random.default_rng(0).poisson(2.0, size=(30, 12, 6)).astype(np.float32)
    sets = ["model.gen_dim=12", "model.con_dim=8", "model.ic_enc_dim=8", "model.ci_enc_dim=8",
            "model.fac_dim=4", "train.n_samples=2", "train.batch_size=8", "train.epochs=5",
            "train.device=cpu"]
    whole = api.train(x, tmp_path / "whole", overrides=sets, quiet=True)
    run_epoch = Trainer.run_epoch
    calls = []

    def stops_at_the_third(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return run_epoch(self)

    monkeypatch.setattr(Trainer, "run_epoch", stops_at_the_third)
    said = []
    with pytest.raises(KeyboardInterrupt):
        api.train(x, tmp_path / "cut", overrides=sets, log=said.append)
    assert said[-1].startswith("interrupted after epoch 2; continue with")
    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)
    with pytest.raises(UserInputError, match="is not the data the run trained on"):
        api.train(x[:, :, :5], tmp_path / "cut", resume=True, quiet=True)
    resumed = api.train(x, tmp_path / "cut", resume=True, quiet=True)
    assert resumed.metrics["epochs"] == whole.metrics["epochs"] == 5
    for key in ("valid_recon", "best_epoch", "bps"):
        assert resumed.metrics[key] == pytest.approx(whole.metrics[key], rel=1e-6), key
    logs = [(tmp_path / d / "train_log.csv").read_text() for d in ("whole", "cut")]
    assert logs[0].splitlines()[1:] and [r.split(",")[:-1] for r in logs[0].splitlines()] == \
        [r.split(",")[:-1] for r in logs[1].splitlines()]  # all but the seconds column
    with pytest.raises(UserInputError, match="holds a finished training"):
        api.train(None, tmp_path / "cut", resume=True, quiet=True)


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
