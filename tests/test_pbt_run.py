"""AutoLFADS on real Ray (bound to 127.0.0.1): the tournament, logs, best model, outputs, resume."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import scipy.io
import torch
from conftest import TINY_MODEL, tiny_dataset

from autolfads.data.writers import write_lfads_h5
from autolfads.pbt.search_space import build_space, is_perturbation_of

TINY = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "train.batch_size=16", "train.n_samples=3", "train.kl_increase_epochs=2",
    "train.l2_increase_epochs=2"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def check_logs(run, population, generations):
    hp = read_csv(run / "pbt" / "hp_log.csv")
    dec = read_csv(run / "pbt" / "decision_log.csv")
    gens = [int(r["generation"]) for r in hp]
    assert sorted(gens) == sorted(list(range(1, generations + 1)) * population)  # none redone
    assert len(dec) == len(hp)
    space = build_space(None)
    names = list(space)
    table = {(int(r["generation"]), int(r["worker"])): {k: float(r[k]) for k in names}
             for r in hp}
    exploits = [r for r in dec if r["exploited"] == "true"]
    assert exploits, "the worst worker always copies, so every generation has an exploit"
    for r in exploits:
        g, w, s = int(r["generation"]), int(r["worker"]), int(r["source_worker"])
        assert float(r["source_score"]) < float(r["score"]) or math.isnan(float(r["score"]))
        if g < generations:  # the next generation ran with a perturbation of the source's HPs
            assert is_perturbation_of(table[(g + 1, w)], table[(g, s)], space)
            assert table[(g + 1, w)] != table[(g, s)]
    for r in dec:
        if r["exploited"] == "false" and int(r["generation"]) < generations:
            g, w = int(r["generation"]), int(r["worker"])
            assert table[(g + 1, w)] == table[(g, w)]
    best = json.loads((run / "pbt" / "best_worker.json").read_text())
    last = [r for r in hp if int(r["generation"]) == generations]
    assert best["generation"] == generations
    assert best["score"] == pytest.approx(min(float(r["score"]) for r in last))
    return hp, dec


@pytest.mark.slow
def test_autolfads_run_end_to_end(tmp_path):
    import autolfads

    run = tmp_path / "run"
    # With sample validation on: every worker scores on the same held-out entries, also after
    # the exploits (each generation has one), so its checkpoints all name the same entries.
    res = autolfads.run(tiny_dataset(n_trials=40), run, population=4, generations=3,
                        epochs_per_generation=2, overrides=[*TINY, "model.sv_rate=0.2"],
                        quiet=True)
    check_logs(run, population=4, generations=3)
    ckpts = sorted((run / "pbt" / "checkpoints").glob("w*/*.pt"))
    digests = {torch.load(p, weights_only=True)["sv_mask"] for p in ckpts}
    assert len(ckpts) == 4 and len(digests) == 1 and len(digests.pop()) == 16
    assert (run / "best_model" / "checkpoint.pt").is_file()
    assert json.loads((run / "best_model" / "hparams.json").read_text())["generation"] == 3
    mat = scipy.io.loadmat(run / "output" / "lfads_output.mat")
    assert mat["rates"].shape == (8, 15, 40)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["generations"] == 3 and metrics["epochs"] == 6
    assert 0 <= metrics["best_worker"] < 4 and "hp_lr" in metrics
    assert res.rates.shape == (40, 15, 8)
    # Only the latest generation's worker checkpoints are kept.
    kept = sorted(p.name for p in (run / "pbt" / "checkpoints").glob("w*/*.pt"))
    assert kept == ["gen003.pt"] * 4


def test_autolfads_run_with_a_continuous_observation_model(tmp_path, capsys):
    """PBT scores workers by the chosen model's validation cost; exploits copy its buffers."""
    import autolfads
    from autolfads.analysis.status import status
    from autolfads.data.modalities import modality_dataset

    run = tmp_path / "run"
    data = modality_dataset("emg", channels=6, conditions=4, trials_per_condition=5, bins=15)
    res = autolfads.run(data, run, population=3, generations=2, epochs_per_generation=2,
                        overrides=TINY, quiet=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["observation"] == "gamma" and "bps" not in metrics
    assert "observation: gamma" in (run / "config.yaml").read_text()
    scores = [float(r["score"]) for r in read_csv(run / "pbt" / "hp_log.csv")]
    assert all(math.isfinite(x) for x in scores)
    assert res.rates.shape == (20, 15, 6) and (res.rates > 0).all()
    status(str(run))
    assert "best so far: worker" in capsys.readouterr().out


def _interrupt_after_a_generation(tmp_path, stop, population: int, generations: int,
                                  epochs: int, report: bool = True
                                  ) -> tuple[list[str], Path, str, int]:
    """Start `autolfads run` in a process group, call stop(proc) once a generation is saved;
    (the command, the run directory, stderr, exit status). `report`: train.report."""
    data = tmp_path / "tiny.h5"
    write_lfads_h5(data, tiny_dataset(n_trials=40))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "autolfads.cli", "run", str(data), "--out", str(run),
           "--population", str(population), "--generations", str(generations),
           "--epochs-per-generation", str(epochs), *[a for s in TINY for a in ("--set", s)],
           "--set", f"train.report={str(report).lower()}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        pop = run / "pbt" / "population.json"
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if pop.is_file() and json.loads(pop.read_text())["generation"] >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        stop(proc)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return cmd, run, err, proc.returncode


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing_generations(tmp_path):
    cmd, run, err, code = _interrupt_after_a_generation(
        tmp_path, lambda proc: os.killpg(proc.pid, signal.SIGINT), 3, 4, 2, report=False)
    pop = run / "pbt" / "population.json"
    assert code == 130, err
    assert "--resume" in err.splitlines()[-1]
    done = json.loads(pop.read_text())["generation"]
    assert 1 <= done < 4
    assert not (run / "output").exists()

    resumed = subprocess.run([*cmd[:4], "--out", str(run), "--resume", "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from generation {done}" not in resumed.stdout  # --quiet
    check_logs(run, population=3, generations=4)
    assert (run / "output" / "lfads_output.h5").is_file()
    assert not (run / "report").exists()  # train.report=false, kept by --resume from config.yaml


@pytest.mark.slow
def test_sigterm_to_the_driver_stops_a_run_as_ctrl_c_does(tmp_path):
    """A scheduler's (or `kill`'s) SIGTERM: Ray's own handler would abort the process (134)."""
    cmd, run, err, code = _interrupt_after_a_generation(
        tmp_path, lambda proc: proc.send_signal(signal.SIGTERM), 2, 20, 1)  # the driver only
    assert code == 130, err
    assert "continue with: autolfads run --resume" in err.splitlines()[-1], err
    assert "Trials did not complete" not in err
    # the run directory says so too: status and the page say 'interrupted', which stops reloading
    said = subprocess.run([*cmd[:3], "status", str(run)], capture_output=True, text=True,
                          timeout=120)
    assert "interrupted " in said.stdout and "continue with" in said.stdout, said.stdout
    page = (run / "report" / "index.html").read_text()
    assert "interrupted " in page and 'http-equiv="refresh"' not in page


@pytest.mark.slow
def test_unplaceable_workers_fail_fast(tmp_path):
    """Asking for a GPU (or more cores) this machine lacks is an error, not a silent wait."""
    import torch

    import autolfads
    from autolfads.errors import UserInputError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    said: list[str] = []
    with pytest.raises(UserInputError, match="no GPU"):
        autolfads.run(tiny_dataset(n_trials=40), tmp_path / "gpu", population=2, generations=1,
                      workers_per_gpu=2, overrides=TINY, log=said.append)
    assert any(line.endswith("1 CPU per worker, 2 workers per GPU") for line in said)
    with pytest.raises(UserInputError, match="only"):
        autolfads.run(tiny_dataset(n_trials=40), tmp_path / "cpu", population=2, generations=1,
                      cpus_per_worker=512, overrides=TINY, quiet=True)
