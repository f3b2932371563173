"""The cluster path executed for real, no fakes: `autolfads cloud init --provider local` -> `up`
-> `submit` -> `stop` -> `submit --resume` -> `status --follow` -> `download` -> `down`,
on test hosts (network namespaces with their own sshd, tests/ssh_hosts.py) reached over SSH by
Ray's cluster launcher. The same commands and code path as on GCP but node provisioning.

The cluster lists one worker address that no host holds: `cloud status` must name it as pending
with the reason while the real worker joins and runs the job.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from conftest import TINY_MODEL, tiny_dataset
from ssh_hosts import SshHosts, missing_tools

from autolfads.data.writers import write_lfads_h5

TINY = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "train.batch_size=16", "train.n_samples=3", "train.kl_increase_epochs=2",
    "train.l2_increase_epochs=2"]
SETS = [a for s in TINY for a in ("--set", s)]
GENERATIONS = 6


@pytest.fixture
def hosts(tmp_path):
    why = missing_tools()
    if why:
        pytest.skip(f"cannot make SSH test hosts here: {why}")
    with SshHosts(tmp_path, n=2) as h:
        yield h


class Cloud:
    """`autolfads cloud ...` run as the user would, from this machine (the "laptop")."""

    def __init__(self, hosts: SshHosts, cfg: Path):
        self.env, self.cfg, self.cwd = hosts.laptop_env(), cfg, cfg.parent
        self.transcript: list[str] = []

    def __call__(self, *args: str, timeout: float = 300, ok: bool = True
                 ) -> subprocess.CompletedProcess:
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "autolfads.cli", "cloud", *args], env=self.env,
                           cwd=self.cwd, capture_output=True, text=True, timeout=timeout)
        self.transcript.append(f"$ cloud {' '.join(args)}  -> {p.returncode} in "
                               f"{time.time() - t0:.0f}s\n{p.stdout[-2500:]}{p.stderr[-2500:]}")
        if ok:
            assert p.returncode == 0, "\n".join(self.transcript[-3:])
        return p


@pytest.mark.slow
@pytest.mark.xdist_group("test_hosts")  # one multi-host test at a time
def test_cluster_lifecycle_on_ssh_hosts(hosts, tmp_path):
    t_start = time.time()
    name = f"alf-{hosts.tag}"
    cfg, store = tmp_path / "cluster.yaml", tmp_path / "storage"
    store.mkdir()
    cloud = Cloud(hosts, cfg)
    head, worker, ghost = hosts.ips[0], hosts.ips[1], hosts.unused_ip()
    try:
        cloud("init", "--provider", "local", "--head-ip", head, "--worker-ips",
              f"{worker},{ghost}", "--ssh-user", "root", "--ssh-key", str(hosts.key),
              "--storage", str(store), "--python", sys.executable, "--cluster-name", name,
              "--object-store-mb", "200", "--out", str(cfg))
        cloud("validate", str(cfg))
        up = cloud("up", str(cfg), "--yes")
        # The preflight ran: ssh and rsync here, and the key.
        for line in ("ok   ssh: installed", "ok   rsync: installed", "ok   ssh key"):
            assert line in up.stdout, up.stdout
        t_up = time.time()

        # The worker that exists joins; the address no host holds is named, with the reason,
        # within a minute of `up`.
        deadline = t_up + 60
        while True:
            st = cloud("status", str(cfg)).stdout
            if "nodes: 2 active" in st and f"pending: {ghost}" in st:
                break
            assert time.time() < deadline, "\n".join(cloud.transcript[-2:])
            time.sleep(3)
        pending = next(ln for ln in st.splitlines() if ghost in ln)
        assert "waiting-for-ssh" in pending and "SSH" in pending, st

        # A run submitted, stopped after a generation, refused as a new run under the same name,
        # resumed to its end, then downloaded. The stop lands a generation or more later (a
        # generation takes seconds, `cloud stop` a few too), so the generation it stopped at
        # is read from the run; GENERATIONS leaves room for that on a fast machine.
        data = tmp_path / "tiny.h5"
        write_lfads_h5(data, tiny_dataset(n_trials=60))
        sub = cloud("submit", str(cfg), str(data), "--name", "t1", "--workers-per-gpu", "0",
                    "--", "--population", "2", "--generations", str(GENERATIONS),
                    "--epochs-per-generation", "8", *SETS)
        assert "autolfads-t1-1" in sub.stdout, sub.stdout
        population = store / "runs" / "t1" / "pbt" / "population.json"
        deadline = time.time() + 240
        while not population.is_file():
            assert time.time() < deadline, "\n".join(cloud.transcript[-2:])
            time.sleep(0.5)
        stop = cloud("stop", str(cfg), "t1")
        assert "--resume t1" in stop.stdout, stop.stdout
        status = cloud("status", str(cfg), "t1").stdout
        assert "autolfads-t1-1 (attempt 1): STOPPED" in status, status
        stopped_at = json.loads(population.read_text())["generation"]
        assert 1 <= stopped_at < GENERATIONS, status
        assert f"run: generation {stopped_at} done" in status, status
        again = cloud("submit", str(cfg), "--name", "t1", ok=False)
        assert again.returncode == 2, again.stdout + again.stderr
        err = [ln for ln in again.stderr.splitlines() if ln.startswith("error:")]
        assert len(err) == 1 and "--resume t1" in err[0], again.stderr
        cloud("submit", str(cfg), "--resume", "t1", "--workers-per-gpu", "0")
        follow = cloud("status", str(cfg), "t1", "--follow", timeout=400)
        assert "autolfads-t1-2" in follow.stdout and "SUCCEEDED" in follow.stdout, \
            follow.stdout[-3000:]
        assert f"resuming from generation {stopped_at}" in follow.stdout
        assert f"generation {GENERATIONS} done" in follow.stdout

        dest = tmp_path / "downloads"
        cloud("download", str(cfg), "t1", "--dest", str(dest))
        with h5py.File(dest / "t1" / "output" / "lfads_output.h5", "r") as f:
            assert f["rates"].shape == (60, 15, 8)
            assert (f["rates"][()] > 0).all()
        hp = (dest / "t1" / "pbt" / "hp_log.csv").read_text().splitlines()[1:]
        generations = sorted(int(r.split(",")[0]) for r in hp)
        assert generations == sorted(2 * list(range(1, GENERATIONS + 1)))  # none redone

        cloud("down", str(cfg), "--yes")
        assert hosts.ray_processes(0) == [] and hosts.ray_processes(1) == []
    finally:
        if not cfg.is_file() or "down" not in " ".join(cloud.transcript[-1:]):
            cloud("down", str(cfg), "--yes", ok=False, timeout=120)
        hosts.close(name)
    print(f"cluster lifecycle: {time.time() - t_start:.0f} s; " + "; ".join(
        t.splitlines()[0].split("  -> ")[1].split(" in ")[1] + " " + t.split()[2]
        for t in cloud.transcript))
