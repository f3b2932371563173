"""`autolfads train` stopped part-way (Ctrl-C, a scheduler's SIGTERM) and `--resume`: the
training continues exactly where its kept state was, on the same data, model and split."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from autolfads import api
from autolfads.errors import UserInputError
from autolfads.training import resumable
from autolfads.training.loop import Trainer

CLI = [sys.executable, "-c", "from autolfads.cli import main; main()"]
SMALL = ["model.gen_dim=12", "model.con_dim=8", "model.ic_enc_dim=8", "model.ci_enc_dim=8",
         "model.fac_dim=4", "train.n_samples=2", "train.batch_size=8", "train.epochs=5",
         "train.device=cpu"]


def data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(2.0, size=(30, 12, 6)).astype(np.float32)


def interrupted(tmp_path, monkeypatch, at_epoch: int = 3, sets=SMALL) -> tuple[str, list]:
    """A training in tmp_path/cut stopped by Ctrl-C while running epoch `at_epoch`."""
    run_epoch, calls, said = Trainer.run_epoch, [], []

    def stops(self):
        calls.append(1)
        if len(calls) == at_epoch:
            raise KeyboardInterrupt
        return run_epoch(self)

    monkeypatch.setattr(Trainer, "run_epoch", stops)
    with pytest.raises(KeyboardInterrupt):
        api.train(data(), tmp_path / "cut", overrides=sets, log=said.append)
    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)
    return str(tmp_path / "cut"), said


def test_sigterm_stops_train_as_ctrl_c_does_and_resume_continues_it(tmp_path):
    """Exit status 130, 'interrupted' and how to continue (typer returned 130, which was taken
    for success); --resume then finishes the training from its kept epoch."""
    out, x = tmp_path / "run", tmp_path / "x.npz"
    np.savez(x, data=np.random.default_rng(0).poisson(2.0, (60, 20, 8)).astype(np.float32),
             layout="trials_time_neurons")
    args = [*CLI, "train", str(x), "--out", str(out), "--set", "train.epochs=400", "--set",
            "model.gen_dim=16", "--set", "model.con_dim=8", "--set", "train.n_samples=1",
            "--set", "train.device=cpu", "--set", "train.batch_size=8"]
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
    kept = int(err.split("the training state after epoch ")[1].split(" ")[0])
    assert kept >= 1 and f"continue with: autolfads train --out {out} --resume" in err
    # The same --out without --resume: refused, with the way to continue.
    with pytest.raises(UserInputError, match="--resume to continue the run there"):
        api.train(str(x), out, quiet=True)
    resumed = subprocess.run([*CLI, "train", "--out", str(out), "--resume", "--epochs",
                              str(kept + 1)], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"continuing on cpu after epoch {kept} of up to {kept + 1}" in resumed.stderr
    assert f"epoch {kept + 1:>4}/{kept + 1}" in resumed.stderr
    assert (out / "metrics.json").exists() and not (out / "model" / "train_state.pt").exists()
    assert len((out / "train_log.csv").read_text().splitlines()) == 1 + kept + 1


def test_a_resumed_training_is_the_training_that_was_not_interrupted(tmp_path, monkeypatch):
    """Model, optimizer, early-stopping state and random streams all continue: the resumed
    training's epochs are those of the one that ran through."""
    whole = api.train(data(), tmp_path / "whole", overrides=SMALL, quiet=True)
    out, said = interrupted(tmp_path, monkeypatch, at_epoch=3)
    # Epoch 1 was kept; epoch 2 came within resumable.KEEP_EVERY_S of it.
    assert said[-1] == (f"interrupted; the training state after epoch 1 is kept: continue with: "
                        f"autolfads train --out {out} --resume")
    with pytest.raises(UserInputError, match="is not the data the run trained on"):
        api.train(data()[:, :, :5], out, resume=True, quiet=True)
    resumed = api.train(data(), out, resume=True, quiet=True)
    assert resumed.metrics["epochs"] == whole.metrics["epochs"] == 5
    for key in ("valid_recon", "best_epoch", "bps"):
        assert resumed.metrics[key] == pytest.approx(whole.metrics[key], rel=1e-6), key
    logs = [(tmp_path / d / "train_log.csv").read_text() for d in ("whole", "cut")]
    assert logs[0].splitlines()[1:] and [r.split(",")[:-1] for r in logs[0].splitlines()] == \
        [r.split(",")[:-1] for r in logs[1].splitlines()]  # all but the seconds column
    with pytest.raises(UserInputError, match="holds a finished training"):
        api.train(None, out, resume=True, quiet=True)


@pytest.mark.parametrize("kwargs,words", [
    (dict(overrides=["model.gen_dim=20"]), "model had model.gen_dim=12 (now 20)"),
    (dict(overrides=["data.valid_every=3"]), "split the trials, hold out neurons or forward"),
    (dict(overrides=["data.forward_bins=2"]), "split the trials, hold out neurons or forward"),
    (dict(epochs=1), "--epochs 1: 2 epochs are already done"),
    (dict(seed=3), "leave out --config and --seed"),
    (dict(config="other.yaml"), "leave out --config and --seed"),
    (dict(data=data() - 5.0), "is not the data the run trained on"),  # not poisson's complaint
], ids=["model", "split", "forward", "epochs", "seed", "config", "other data"])
def test_resume_refuses_what_would_not_continue_the_same_training(tmp_path, monkeypatch, kwargs,
                                                                  words):
    monkeypatch.setattr(resumable, "KEEP_EVERY_S", 0.0)  # every epoch kept: 2 done
    out, _ = interrupted(tmp_path, monkeypatch, at_epoch=3, sets=[*SMALL, "train.epochs=9"])
    given = kwargs.pop("data", data())
    with pytest.raises(UserInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        api.train(given, out, resume=True, quiet=True, **kwargs)


def test_hyperparameters_set_now_win_and_a_damaged_state_is_one_line(tmp_path, monkeypatch):
    out, _ = interrupted(tmp_path, monkeypatch, at_epoch=2, sets=[*SMALL, "train.epochs=2"])
    seen = []
    fit = Trainer.fit

    def spy(self, *a, **k):
        seen.append((self.cfg.train.lr, self.optimizer.param_groups[0]["lr"]))
        return fit(self, *a, **k)

    monkeypatch.setattr(Trainer, "fit", spy)
    state = tmp_path / "cut" / "model" / "train_state.pt"
    kept = state.read_bytes()
    state.write_bytes(kept[: len(kept) // 2])
    with pytest.raises(UserInputError, match="train_state.pt cannot be read .* start the "
                                             "training again with --force"):
        api.train(data(), out, resume=True, quiet=True)
    state.write_bytes(kept)
    api.train(data(), out, resume=True, quiet=True, overrides=["train.lr=0.0123"])
    assert seen[-1] == (0.0123, 0.0123)
    assert "lr: 0.0123" in (tmp_path / "cut" / "config.yaml").read_text()


def test_a_state_that_cannot_be_written_warns_and_training_goes_on(tmp_path, monkeypatch):
    save, calls = Trainer.save, []

    def full_disk(self, path, **extra):
        if str(path).endswith("train_state.pt"):
            calls.append(1)
            raise UserInputError(f"{path}: could not be written (No space left on device)")
        return save(self, path, **extra)

    monkeypatch.setattr(Trainer, "save", full_disk)
    said = []
    res = api.train(data(), tmp_path / "r", overrides=SMALL, log=said.append)
    assert res.metrics["epochs"] == 5 and len(calls) == 1  # tried once, then left alone
    assert any(s.startswith("warning: the training state cannot be kept") and
               "cannot be resumed" in s for s in said)


def test_what_resume_says_about_folders_it_cannot_continue(tmp_path, monkeypatch):
    (tmp_path / "pbt_run" / "pbt").mkdir(parents=True)
    with pytest.raises(UserInputError, match="holds an `autolfads run` .* autolfads run --out"):
        api.train(None, tmp_path / "pbt_run", resume=True)
    out, _ = interrupted(tmp_path, monkeypatch, at_epoch=2)
    run = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert run["command"] == "train" and run["data_in_memory"] is True
    with pytest.raises(UserInputError, match="an array passed from Python; pass the same array"):
        api.train(None, out, resume=True)


def test_status_tells_a_training_from_a_pbt_run(tmp_path, monkeypatch, capsys):
    from autolfads.analysis.status import status

    out, _ = interrupted(tmp_path, monkeypatch, at_epoch=2)
    status(out)
    said = " ".join(capsys.readouterr().out.split())  # rich wraps long paths
    assert "single LFADS model" in said and "continue with autolfads train --out" in said
    assert "1 of at most 5 epochs logged" in said  # the log follows the kept state
    api.train(data(), out, resume=True, quiet=True)
    status(out)
    said = " ".join(capsys.readouterr().out.split())  # rich wraps long paths
    assert "single LFADS model (autolfads train, no population), finished" in said
    assert "AutoLFADS" not in said


def test_an_out_folder_left_before_the_first_epoch_was_kept_can_be_used_again(tmp_path):
    from autolfads.results import prepare_run_dir

    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)  # what an interrupted first save leaves
    (out / "config.yaml").write_text("train: {}\n")
    (out / "run.json").write_text("{}")
    assert prepare_run_dir(out) == out  # no --force needed: nothing there to lose
    (out / "model" / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(UserInputError, match="holds an earlier run; use --force to replace it"):
        prepare_run_dir(out)


def test_force_replaces_only_what_a_run_writes(tmp_path):
    """--force removes the earlier run's own files, never the user's beside it (the data file,
    notes); a folder of the user's is never a run's, with or without --force."""
    from autolfads.results import prepare_run_dir

    run = tmp_path / "run"
    for name in ("model/checkpoint.pt", "output/lfads_output.h5", "pbt/hp_log.csv"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"x")
    for name in ("config.yaml", "metrics.json", "session.mat", "notes.txt", ".DS_Store"):
        (run / name).write_text(name)
    with pytest.raises(UserInputError, match="holds a finished run"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, force=True, inputs=(run / "session.mat", None)) == run
    assert sorted(e.name for e in run.iterdir()) == [".DS_Store", "notes.txt", "session.mat"]
    assert (run / "session.mat").read_text() == "session.mat"

    # A project folder: the user's own config.yaml, data and analysis: never a run's.
    project = tmp_path / "project"
    (project / "analysis").mkdir(parents=True)
    (project / "config.yaml").write_text("model: {gen_dim: 32}\n")
    (project / "session.mat").write_text("data")
    for force in (False, True):
        with pytest.raises(UserInputError, match=r"not an autolfads run \(config.yaml, "
                                                 r"session.mat\); a run needs a folder of its"):
            prepare_run_dir(project, force=force)
    assert sorted(e.name for e in project.iterdir()) == ["analysis", "config.yaml", "session.mat"]

    # An input where the run writes is refused, flags or not; a symlinked --out is followed.
    (run / "config.yaml").write_text("train: {}\n")
    with pytest.raises(UserInputError, match="config.yaml is where the run writes its own"):
        prepare_run_dir(run, force=True, inputs=(None, run / "config.yaml"))
    assert (run / "config.yaml").exists()
    (run / "metrics.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(run, target_is_directory=True)
    assert prepare_run_dir(link, force=True) == link and not (run / "metrics.json").exists()
    assert (run / "notes.txt").exists() and run.is_dir() and link.is_symlink()


def test_only_a_folder_with_a_runs_own_files_is_a_run(tmp_path):
    """A folder of the user's may have an output/, a model/ or a config.yaml of its own: without
    a file only a run writes (run.json, metrics.json, ...) nothing there is ever removed, even
    with --force; a run's own config.yaml may be the --config of its rerun."""
    from autolfads.results import prepare_run_dir

    proj = tmp_path / "proj"
    for name in ("output/figure1.pdf", "model/my_glm.pkl", "config.yaml"):
        (proj / name).parent.mkdir(parents=True, exist_ok=True)
        (proj / name).write_text(name)
    for force in (False, True):
        with pytest.raises(UserInputError, match=r"holds files that are not an autolfads run "
                                                 r"\(config.yaml, model, output\)"):
            prepare_run_dir(proj, force=force)
    assert (proj / "output/figure1.pdf").exists() and (proj / "model/my_glm.pkl").exists()
    (tmp_path / "empty/sub").mkdir(parents=True)  # empty folders hold nothing to lose
    assert prepare_run_dir(tmp_path / "empty") == tmp_path / "empty"

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model/checkpoint.pt").write_bytes(b"x")
    (run / "config.yaml").write_text("train: {}\n")
    (run / "run.json").write_text("{}")
    assert prepare_run_dir(run, force=True, inputs=(None, run / "config.yaml")) == run
    assert not (run / "config.yaml").exists()  # read by then; the rerun writes its own
