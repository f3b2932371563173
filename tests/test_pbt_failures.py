"""Worker failures (GPU fail-fast, failure budget, back-off) and resuming finished runs."""

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import run_cli
from fake_run import make_run

from autolfads.config import load_config
from autolfads.pbt import trainable
from autolfads.pbt.callbacks import (
    StartWatch,
    WorkerFailures,
    _read,
    first_line,
    gpu_missing,
    restart_delay,
)
from autolfads.pbt.resume import resume_point
from autolfads.pbt.stopper import PBTStopper
from autolfads.pbt.trainable import GPUMissing, require_gpu, worker_device

# -- GPU fail-fast ------------------------------------------------------------------------------


def test_require_gpu_names_the_node(monkeypatch):
    node = "gpu-worker-1 (10.0.0.5)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    with pytest.raises(GPUMissing) as e:
        require_gpu(3, ["0"], node)
    msg = str(e.value)
    assert msg.startswith("worker 3 on node gpu-worker-1 (10.0.0.5) was given a GPU but sees none")
    assert "driver" in msg and msg.endswith("check nvidia-smi there") and "\n" not in msg
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(GPUMissing, match="CPU-only build"):
        require_gpu(3, ["0"], node)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(GPUMissing, match="Ray assigned it no GPU"):
        require_gpu(0, [], node)
    monkeypatch.setattr(trainable, "missing_kernels", lambda: None)
    require_gpu(0, ["0"], node)  # a usable GPU: nothing to say
    # A GPU this torch was not built for fails the same way on every restart: it ends the run.
    monkeypatch.setattr(trainable, "missing_kernels", lambda: "no kernels for the Tesla V100")
    with pytest.raises(GPUMissing, match="worker 0 on node gpu-worker-1 .* cannot use its GPU: "
                                         "no kernels for the Tesla V100"):
        require_gpu(0, ["0"], node)


def test_gpu_workers_use_cuda_explicitly():
    assert worker_device("auto", 2) == "cuda"  # never a silent CPU fallback
    assert worker_device("cuda:1", 2) == "cuda"  # Ray shows a worker its own GPU only
    assert worker_device("cpu", 2) == "cpu"  # explicit
    # CPU workers stay on the CPU even where torch sees GPUs (Ray no longer hides them).
    assert worker_device("auto", 0) == "cpu"


def test_gpu_missing_is_found_in_rays_error_text():
    msg = "worker 1 on node h (10.0.0.5) was given a GPU but sees none (x); check nvidia-smi there"
    text = ("Failure # 1 (occurred at 2026-01-01_00-00-00)\n"
            "ray::ImplicitFunc.train() (pid=1, ip=10.0.0.5, actor_id=ab)\n"
            '  File "trainable.py", line 60, in require_gpu\n    raise GPUMissing(\n'
            f"autolfads.pbt.trainable.GPUMissing: {msg}\n")
    assert gpu_missing(text) == msg
    assert gpu_missing("Failure # 1\nValueError: boom\n") is None


# -- failure budget and back-off ----------------------------------------------------------------


def test_restart_delay_doubles_up_to_a_minute():
    assert [restart_delay(n) for n in range(8)] == [0, 2, 4, 8, 16, 32, 60, 60]
    assert restart_delay(10**6) == 60


def fake_trial(tmp_path, worker, error):
    path = tmp_path / f"error{worker}.txt"
    path.write_text(f"Failure # 1\n{error}\n")
    trial = SimpleNamespace(config={"member": {"worker": worker, "hp": {"lr": 1e-3}}},
                            error_file=str(path))
    trial.set_config = lambda c: setattr(trial, "config", c)
    return trial


def test_failures_back_off_and_are_counted(tmp_path):
    said, events, aborts = [], [], []
    cb = WorkerFailures(said.append, events.append, aborts.append, max_failures=-1,
                        clock=lambda: 1000.0)
    t = fake_trial(tmp_path, 2, "ray.exceptions.ActorDiedError: node lost")
    cb.on_trial_recover(0, [], t)
    assert t.config["member"]["not_before"] == 1002.0 and t.config["member"]["hp"]
    cb.on_trial_recover(0, [], t)
    assert t.config["member"]["not_before"] == 1004.0  # the second failure in a row waits longer
    assert events == said and len(events) == 2
    assert "worker 2 failed (failure 2 of this worker, 2 in a row; pbt.max_failures unlimited)" \
        in events[1] and "node lost" in events[1] and "in 4 s" in events[1]
    cb.on_trial_result(0, [], t, {})  # a finished generation ends the streak, not the count
    cb.on_trial_recover(0, [], t)
    assert t.config["member"]["not_before"] == 1002.0 and "failure 3" in events[-1]
    cb.max_failures = 3
    cb.on_trial_error(0, [], t)
    assert "failed for good" in events[-1] and "pbt.max_failures 3" in events[-1]
    assert not aborts


def test_gpu_failure_aborts_the_run(tmp_path):
    said, events = [], []
    stopper = PBTStopper(10)
    cb = WorkerFailures(said.append, events.append, stopper.abort, max_failures=-1)
    msg = "worker 0 on node h (1.2.3.4) was given a GPU but sees none (x); check nvidia-smi there"
    t = fake_trial(tmp_path, 0, f"autolfads.pbt.trainable.GPUMissing: {msg}")
    assert not stopper.stop_all()
    cb.on_trial_recover(0, [], t)
    assert stopper.stop_all() and stopper.aborted == msg
    assert "not_before" not in t.config["member"]  # not restarted
    assert not said and "stopping the run" in events[0]  # the run's error line says it once


def test_running_out_of_gpu_memory_twice_in_a_row_aborts_the_run(tmp_path):
    said, events = [], []
    stopper = PBTStopper(10)
    cb = WorkerFailures(said.append, events.append, stopper.abort, max_failures=-1)
    host = fake_trial(tmp_path, 5, "ray.exceptions.OutOfMemoryError: Task was killed due to "
                                   "the node running low on memory.")
    cb.on_trial_recover(0, [], host)  # Ray's memory monitor: host memory, its own fix
    cb.on_trial_recover(0, [], host)
    assert not stopper.stop_all() and "killed by Ray: its node ran low on memory" in said[-1]
    said.clear()
    cb.on_trial_recover(0, [], fake_trial(tmp_path, 4, "ActorDiedError: node lost"))
    t = fake_trial(tmp_path, 4, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
                                "20.00 MiB. GPU 0 has a total capacity of 15.7 GiB")
    cb.on_trial_recover(0, [], t)  # once: maybe a neighbour's peak; restarted with the fix said
    assert not stopper.stop_all() and "not_before" in t.config["member"]
    assert "worker 4 failed" in said[1] and "lower --workers-per-gpu" in said[1]
    cb.on_trial_recover(0, [], t)
    assert stopper.stop_all() and stopper.aborted.startswith(
        "worker 4 ran out of GPU memory: lower --workers-per-gpu")
    assert len(said) == 2 and "stopping the run" in events[-1]  # a lost node first: no matter


def test_a_run_whose_workers_never_start_says_so_once():
    said, now = [], [0.0]
    watch = StartWatch(said.append, {"cpu": 1.0, "gpu": 1 / 3}, after_s=180,
                       clock=lambda: now[0], free=lambda: {"CPU": 3.0})
    pending = [SimpleNamespace(status="PENDING") for _ in range(4)]
    for now[0] in (0.0, 100.0, 179.0):
        watch.on_step_begin(0, pending)
    assert not said
    now[0] = 181.0
    watch.on_step_begin(0, pending)
    watch.on_step_begin(0, pending)
    assert len(said) == 1 and said[0].startswith(
        "no worker has started after 181 s: each asks for 1 CPU, 0.333 GPU, and Ray has 3 "
        "CPU and 0 GPU free")
    # one running worker: the rest waiting is the population's queue, never reported
    quiet, now[0] = StartWatch(said.append, {"cpu": 1.0}, after_s=180, clock=lambda: now[0],
                               free=dict), 0.0
    quiet.on_step_begin(0, [SimpleNamespace(status="RUNNING"), *pending])
    now[0] = 1000.0
    quiet.on_step_begin(0, pending)
    assert len(said) == 1


def test_a_worker_that_fails_on_its_settings_stops_the_run(tmp_path):
    stopper = PBTStopper(10)
    cb = WorkerFailures([].append, [].append, stopper.abort, max_failures=-1)
    t = fake_trial(tmp_path, 1, "ray.exceptions.RayTaskError(ValidationError): ray::train()\n"
                   "pydantic_core._pydantic_core.ValidationError: 1 validation error for "
                   "ModelConfig\ndropout_rate\n  Input should be less than 1 [type=less_than, "
                   "input_value=1.2, input_type=float]\n    For further information visit "
                   "https://errors.pydantic.dev/2.14/v/less_than")
    cb.on_trial_recover(0, [], t)
    assert stopper.stop_all() and stopper.aborted == (
        "worker 1 cannot train with its settings: dropout_rate: Input should be less than 1")
    assert first_line(_read(t.error_file)).startswith("Input should be less than 1")
    # a full disk or a shared folder's hiccup (UserInputError from atomic_write), and a
    # ValidationError followed by another exception, may pass: restarted
    stopper = PBTStopper(10)
    cb = WorkerFailures([].append, [].append, stopper.abort, max_failures=-1)
    cb.on_trial_recover(0, [], fake_trial(tmp_path, 2, "autolfads.errors.UserInputError: "
                                          "x/ck.pt: cannot write there (No space left)"))
    cb.on_trial_recover(0, [], fake_trial(tmp_path, 3, "pydantic_core._pydantic_core."
                                          "ValidationError: 1 validation error\nlr\n  bad\n"
                                          "During handling ...\nOSError: [Errno 116] Stale"))
    assert not stopper.stop_all()


def test_replayed_history_does_not_stop_a_resumed_run():
    s = PBTStopper(10, window=1, min_improvement=0.5)
    s.replay([1.0, 0.99])  # would have been a plateau under this rule
    assert not s.stop_all()
    assert s.record(3, 0.1) is None  # the next generation is judged as usual
    assert "less than 50%" in s.record(4, 0.09)


def test_max_failures_config_and_flag(tmp_path, monkeypatch, capsys):
    assert load_config().pbt.max_failures == 20
    assert load_config(None, ["pbt.max_failures=5"]).pbt.max_failures == 5
    import autolfads.pbt.runner
    from autolfads.errors import RunFailed

    seen = {}

    def fake_run_pbt(dataset, cfg, store, **kw):
        seen["max_failures"] = cfg.pbt.max_failures
        raise RunFailed("stop here")

    monkeypatch.setattr(autolfads.pbt.runner, "run_pbt", fake_run_pbt)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "r",
                           "--max-failures", "7")
    assert code == 1 and seen["max_failures"] == 7
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["pbt"]["max_failures"] == 7
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", tmp_path / "r2",
                           "--max-failures", "-2")
    assert code == 2 and err.startswith("error: --max-failures -2") and err.count("\n") == 1
    assert not (tmp_path / "r2").exists()


# -- resuming a finished run --------------------------------------------------------------------


def finished_run(tmp_path, generations=3, **pbt):
    """A fabricated run that completed `generations` generations and wrote its outputs."""
    run = make_run(tmp_path, generations=generations)
    members = [{"worker": w, "hp": {}, "checkpoint": str(run / f"w{w}.pt")} for w in range(3)]
    for m in members:  # resume checks that each worker's checkpoint is there
        Path(m["checkpoint"]).write_bytes(b"")
    (run / "pbt" / "population.json").write_text(json.dumps(
        {"generation": generations, "members": members}))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["pbt"].update(generations=generations, **pbt)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run


def snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("kind", ["generations", "plateau"])
def test_resuming_a_finished_run_changes_nothing(kind, tmp_path, monkeypatch, capsys):
    pbt = {} if kind == "generations" else {"stop_generations": 1, "stop_min_improvement": 0.5}
    run = finished_run(tmp_path, **pbt)
    if kind == "plateau":  # stopped early: 3 of at most 30 generations
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["pbt"]["generations"] = 30
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    code, out, err = run_cli(monkeypatch, capsys, "run", "--out", run, "--resume")
    assert time.perf_counter() - t0 < 20  # no Ray was started
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: --resume: the run in {run} is finished: it stopped after "
                          "generation 3 (")
    assert "nothing was changed" in err and "--force" not in err
    assert f"To train it further: autolfads run --resume --out {run}" in err
    if kind == "generations":
        assert "reached the maximum of 3 generations" in err and "--generations N (N > 3)" in err
        assert "stop_min_improvement" not in err
    else:
        assert "improved by less than 50%" in err and "--set pbt.stop_min_improvement=0" in err
        assert "--generations" not in err
        # More generations alone would stop again at once: still finished, said before Ray.
        code, _, err = run_cli(monkeypatch, capsys, "run", "--out", run, "--resume",
                               "--generations", "40")
        assert code == 2 and "stop_min_improvement=0" in err
    assert snapshot(tmp_path) == before
    # A new run there is refused without suggesting the flag that deletes the results.
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", run)
    assert code == 2 and "--resume" in err and "--force" not in err and "finished" in err
    assert snapshot(tmp_path) == before


def test_relaxed_rules_let_a_finished_run_continue(tmp_path):
    run = finished_run(tmp_path, stop_generations=1, stop_min_improvement=0.5)
    cfg = load_config(run / "config.yaml", ["pbt.generations=5", "pbt.stop_min_improvement=0"])
    point = resume_point(run, str(run), cfg.pbt)
    assert point.generation == 3 and point.finished is None and len(point.bests) == 3
    cfg = load_config(run / "config.yaml", ["pbt.generations=5"])
    with pytest.raises(Exception, match="stop_min_improvement=0"):
        resume_point(run, str(run), cfg.pbt)


def test_pbt_done_without_outputs_is_not_finished(tmp_path):
    """Interrupted while sampling the best worker: --resume writes the outputs, no training."""
    run = finished_run(tmp_path)
    os.remove(run / "metrics.json")
    point = resume_point(run, str(run), load_config(run / "config.yaml").pbt)
    assert point.finished == "reached the maximum of 3 generations"


def test_force_is_suggested_only_when_nothing_is_completed(tmp_path, monkeypatch, capsys):
    run = finished_run(tmp_path)
    os.remove(run / "pbt" / "population.json")  # outputs, but no generation to continue
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", run, "--resume")
    assert code == 2 and "holds results" in err and "--force" not in err
    for name in ("metrics.json", "output"):
        p = run / name
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        else:
            p.unlink()
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", run, "--resume")
    assert code == 2 and "no completed generation" in err and f"--force --out {run}" in err


# A driver that declares a GPU this machine does not have, then runs the `autolfads` command in
# the same process (run_pbt uses an already started Ray as it is). The variable must be set before
# Ray is imported for every Ray port to stay on 127.0.0.1.
FAKE_GPU_DRIVER = """
import os, sys, tempfile, shutil
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
import ray
temp = tempfile.mkdtemp(prefix="autolfads-ray-")
ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _temp_dir=temp,
         object_store_memory=200 * 1024**2, logging_level="ERROR", log_to_driver=False)
from autolfads.cli import main
sys.argv = ["autolfads", *sys.argv[1:]]
try:
    main()
finally:
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
"""


@pytest.mark.slow
def test_gpu_worker_without_a_gpu_ends_the_run(tmp_path):
    """Ray is told this machine has a GPU (it has none): each worker gets a GPU id, torch sees
    no CUDA, and the run ends at once with one error line naming the node."""
    import socket
    import subprocess
    import sys

    from conftest import tiny_dataset
    from test_pbt_run import TINY

    from autolfads.data.writers import write_lfads_h5

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = tmp_path / "tiny.h5"
    write_lfads_h5(data, tiny_dataset(n_trials=40))
    run = tmp_path / "run"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", FAKE_GPU_DRIVER, "run", str(data), "--out", str(run),
         "--population", "2", "--generations", "2", "--epochs-per-generation", "1",
         "--workers-per-gpu", "2", "--quiet", *[a for s in TINY for a in ("--set", s)]],
        capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    err = proc.stderr
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("error: worker "), err  # the whole stderr
    assert f"on node {socket.gethostname()} (127.0.0.1) was given a GPU but sees none" in err
    assert "check nvidia-smi there" in err
    assert f"start again with: autolfads run --force --out {run}" in err
    assert wall < 90, wall  # Ray's start included; the failure itself is seen in seconds
    events = (run / "pbt" / "events.log").read_text().splitlines()
    assert events and all("stopping the run" in e for e in events), events
    for w in (0, 1):  # the run stopped at the first failure: no worker was started again
        assert sum(f"worker {w} failed" in e for e in events) <= 1, events
