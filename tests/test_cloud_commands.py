"""`autolfads cloud up|submit|status|stop|download|down`: the exact commands (dry run, and real
runs against stand-in `ray`/`gcloud` executables), the cluster-side helper's rules (attempt ids,
resume, stop) on a stand-in job client, and how `ray status` is read. The real thing, on SSH
test hosts: test_cloud_lifecycle.py."""

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from test_cloud import BUCKET, PROJECT, one_error

from autolfads.cloud import lifecycle, remote
from autolfads.cloud.cluster import ClusterSpec, build_config, write_config
from autolfads.cloud.local import HEADER, LocalSpec, build_local_config
from autolfads.errors import UserInputError

PY = "~/autolfads-venv/bin/python"
REMOTE = f"ray exec cluster.yaml 'env RAY_AUTH_MODE=token {PY} -m autolfads.cloud.remote"
RUN = f"{PY} -m autolfads.cli run"


@pytest.fixture
def cluster(tmp_path, monkeypatch) -> Path:
    """The default generated GCP cluster.yaml, in the test's (current) folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USER", "alice")
    spec = ClusterSpec(project=PROJECT, bucket=BUCKET).resolved(Path("cluster.yaml"))
    return write_config(build_config(spec), Path("cluster.yaml"))


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """A lab's own hosts: 10.1.2.3 head, two workers, an existing Python on a shared disk."""
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "id"
    key.write_text("KEY")
    spec = LocalSpec(head_ip="10.1.2.3", worker_ips=["10.1.2.4", "10.1.2.5"], ssh_user="lab",
                     ssh_key=str(key), storage="/nfs/autolfads", cluster_name="lab",
                     python="/opt/alf/bin/python").resolved(Path("lab.yaml"))
    return write_config(build_local_config(spec), Path("lab.yaml"), header=HEADER)


def dry(monkeypatch, capsys, *args) -> list[str]:
    code, out, err = run_cli(monkeypatch, capsys, "cloud", args[0], "--dry-run", *args[1:])
    assert code == 0, err
    return out.splitlines()


def test_up_builds_the_wheel_and_keeps_a_running_job(cluster, monkeypatch, capsys):
    out = dry(monkeypatch, capsys, "up", cluster, "--hours", "2.5")
    assert "Estimated cost at full size: 8 x nvidia-tesla-t4 on-demand" in "\n".join(out)
    assert any("$    14.50" in ln for ln in out)
    wheel = str(Path("autolfads-wheel").resolve())
    assert out[-3:] == [f"{sys.executable} -m pip wheel -q --no-deps --wheel-dir {wheel} "
                        f"{lifecycle.project_root()}",
                        "ray get-auth-token --generate",
                        "ray up -y --no-restart cluster.yaml"]
    # The project set-up (firewall, NAT, worker account) comes before `ray up`.
    assert any(ln.startswith("gcloud compute firewall-rules create autolfads-alice-internal")
               for ln in out)
    assert dry(monkeypatch, capsys, "up", cluster, "--restart")[-1] == "ray up -y cluster.yaml"


def test_up_on_lab_hosts(lab, monkeypatch, capsys):
    # Nothing to build (the hosts have autolfads), no GCP, and the v1 autoscaler.
    assert dry(monkeypatch, capsys, "up", lab) == [
        "ray get-auth-token --generate",
        "RAY_UP_enable_autoscaler_v2=0 ray up -y --no-restart lab.yaml"]
    cfg = yaml.safe_load(lab.read_text())
    assert cfg["provider"] == {"type": "local", "head_ip": "10.1.2.3",
                               "worker_ips": ["10.1.2.4", "10.1.2.5"]}
    assert cfg["min_workers"] == cfg["max_workers"] == 2
    head = cfg["head_start_ray_commands"][1]
    for part in ("export RAY_AUTH_MODE=token", "export RAY_enable_autoscaler_v2=0",
                 "/opt/alf/bin/ray start", "--node-ip-address=10.1.2.3",
                 "--dashboard-host=127.0.0.1"):
        assert part in head, head
    assert cfg["setup_commands"] == []  # --python: nothing installed
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "validate", lab)
    assert code == 0 and "your own hosts" in out, err


def test_submit_uploads_and_starts_an_attempt(cluster, monkeypatch, capsys):
    Path("session.mat").write_bytes(b"x")
    out = dry(monkeypatch, capsys, "submit", cluster, "session.mat", "--name", "s1",
              "--workers-per-gpu", "2", "--", "--population", "16")
    data = f"{BUCKET}/data/s1/session.mat"
    assert out == [
        f"gcloud storage cp session.mat {data}",
        f"{REMOTE} submit s1 {BUCKET}/runs/s1 -- {RUN} {data} --out {BUCKET}/runs/s1 "
        "--address auto --workers-per-gpu 2 --population 16'"]
    out = dry(monkeypatch, capsys, "submit", cluster, "--resume", "s1")
    assert out == [f"{REMOTE} submit --resume s1 {BUCKET}/runs/s1 -- {RUN} --out "
                   f"{BUCKET}/runs/s1 --address auto --resume'"]  # it keeps its own


def test_submit_on_lab_hosts_copies_data_to_the_head(lab, monkeypatch, capsys):
    Path("d.h5").write_bytes(b"x")
    out = dry(monkeypatch, capsys, "submit", lab, "d.h5", "--name", "r", "--workers-per-gpu",
              "0")
    assert out == [
        "ray exec lab.yaml 'mkdir -p /nfs/autolfads/data/r'",
        f"ray rsync-up lab.yaml {Path('d.h5').resolve()} /nfs/autolfads/data/r/d.h5",
        "ray exec lab.yaml 'env RAY_AUTH_MODE=token /opt/alf/bin/python -m "
        "autolfads.cloud.remote submit r /nfs/autolfads/runs/r -- /opt/alf/bin/python -m "
        "autolfads.cli run /nfs/autolfads/data/r/d.h5 --out /nfs/autolfads/runs/r --address "
        "auto --workers-per-gpu 0'"]


def test_submit_shares_each_gpu_between_workers_where_there_are_gpus(lab, monkeypatch, capsys):
    """Without --workers-per-gpu: 3 workers per GPU on a cluster with GPUs (GCP, lab hosts
    set up with --gpus), CPU workers on lab hosts without."""
    tail = "--address auto --workers-per-gpu {}'"
    assert dry(monkeypatch, capsys, "submit", lab, "--name", "r")[-1].endswith(tail.format(0))
    cfg = yaml.safe_load(lab.read_text())
    cfg["metadata"]["autolfads"]["gpus"] = True
    lab.write_text(yaml.safe_dump(cfg))
    assert dry(monkeypatch, capsys, "submit", lab, "--name", "r")[-1].endswith(tail.format(3))
    assert dry(monkeypatch, capsys, "submit", lab, "--name", "r", "--workers-per-gpu",
               "1")[-1].endswith(tail.format(1))
    del cfg["metadata"]["autolfads"]["gpus"]  # a lab YAML from before: the default before, 1
    lab.write_text(yaml.safe_dump(cfg))
    assert dry(monkeypatch, capsys, "submit", lab, "--name", "r")[-1].endswith(tail.format(1))


@pytest.mark.parametrize("args,expected", [
    ([], [f"{REMOTE} status'"]),
    (["s1"], [f"{REMOTE} status s1 --run {BUCKET}/runs/s1'"]),
    (["s1", "--follow"], [f"{REMOTE} status s1 --run {BUCKET}/runs/s1 --follow'"]),
    (["s1", "--address", "http://127.0.0.1:8265"],
     [f"RAY_AUTH_MODE=token {sys.executable} -m autolfads.cloud.remote --address "
      f"http://127.0.0.1:8265 status s1 --run {BUCKET}/runs/s1"]),
])
def test_status_commands(cluster, monkeypatch, capsys, args, expected):
    assert dry(monkeypatch, capsys, "status", cluster, *args) == expected


def test_stop_download_down(cluster, lab, monkeypatch, capsys):
    assert dry(monkeypatch, capsys, "stop", cluster, "s1") == [f"{REMOTE} stop s1'"]
    assert dry(monkeypatch, capsys, "download", cluster, "s1", "--dest", "results") == [
        f"gcloud storage cp -r {BUCKET}/runs/s1 results"]
    assert dry(monkeypatch, capsys, "down", cluster) == ["ray down -y cluster.yaml"]
    assert dry(monkeypatch, capsys, "download", lab, "r", "--dest", "res") == [
        "ray rsync-down lab.yaml /nfs/autolfads/runs/r/ res/r/"]
    # `ray down` stops the head only; each worker's Ray is stopped over SSH (best effort).
    ssh = f"ssh -i {Path('id').resolve()} {' '.join(lifecycle.SSH_OPTIONS)}"
    assert dry(monkeypatch, capsys, "down", lab) == [
        "ray down -y lab.yaml",
        f"{ssh} lab@10.1.2.4 '/opt/alf/bin/ray stop --force'",
        f"{ssh} lab@10.1.2.5 '/opt/alf/bin/ray stop --force'"]
    assert all(c.may_fail for c in lifecycle.down_commands(
        lifecycle.cluster_of(lab, yaml.safe_load(lab.read_text())))[1:])


@pytest.mark.parametrize("args,words", [
    (["submit", "cluster.yaml", "nope.mat", "--name", "a"], ["nope.mat", "not found"]),
    (["submit", "cluster.yaml", "--name", "a b"], ["--name", "'a b'"]),
    (["submit", "cluster.yaml", "--name", "a", "--", "--out", "x"], ["--out", "--name"]),
    (["submit", "cluster.yaml", "x.mat", "--resume", "a"], ["--resume", "data it started"]),
    (["submit", "cluster.yaml", "--resume", "a", "--name", "b"], ["--resume a", "once"]),
    (["download", "cluster.yaml", "s1", "--bucket", "bucket"], ["--bucket", "gs://"]),
])
def test_lifecycle_bad_input(cluster, monkeypatch, capsys, args, words):
    Path("x.mat").write_bytes(b"x")
    one_error(*run_cli(monkeypatch, capsys, "cloud", args[0], "--dry-run", *args[1:])[::2],
              words)


@pytest.mark.parametrize("args,words", [
    (["--worker-ips", "10.1.2.4,nonsense"], ["--worker-ips", "'nonsense'", "IP address"]),
    (["--worker-ips", "10.1.2.3"], ["listed twice"]),
    (["--storage", "relative/dir"], ["--storage", "absolute path"]),
    (["--ssh-key", "missing-key"], ["--ssh-key", "not found"]),
    (["--python", "python3"], ["--python", "absolute"]),
])
def test_bad_local_init_is_one_error_line(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    Path("id").write_text("KEY")
    base = {"--head-ip": "10.1.2.3", "--worker-ips": "10.1.2.4", "--ssh-user": "lab",
            "--ssh-key": "id", "--storage": "/nfs/x"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in base.items() for x in kv]
    one_error(*run_cli(monkeypatch, capsys, "cloud", "init", "--provider", "local", *flat)[::2],
              words)
    assert not Path("cluster.yaml").exists()


# --- running them --------------------------------------------------------------------------

@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """`ray`, `gcloud` and `ssh` stand-ins that log their arguments (and RAY_AUTH_MODE)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("ray", "gcloud", "ssh"):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\necho "{name} $* auth=$RAY_AUTH_MODE" >> {log}\n'
                       '[ "$1" = get-auth-token ] && echo SECRET-TOKEN\nexit 0\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setattr(lifecycle, "_google_client_installed", lambda: True)
    return lambda: log.read_text().splitlines() if log.exists() else []


def test_up_asks_and_runs_the_commands(lab, monkeypatch, capfd, fake_tools):
    code, out, _ = run_cli(monkeypatch, capfd, "cloud", "up", lab, "--no-doctor", stdin="n\n")
    assert code == 0 and "Start this cluster?" in out and "Not started." in out
    assert fake_tools() == []
    code, out, err = run_cli(monkeypatch, capfd, "cloud", "up", lab, "--yes", "--no-doctor")
    assert code == 0, err
    assert fake_tools() == ["ray get-auth-token --generate auth=",
                            "ray up -y --no-restart lab.yaml auth="]
    assert "SECRET-TOKEN" not in out + err  # the token never reaches the terminal
    assert "a running job goes on" in out


def test_real_commands_run_in_order(lab, monkeypatch, capfd, fake_tools):
    code, _, err = run_cli(monkeypatch, capfd, "cloud", "stop", lab, "r1")
    assert code == 0, err
    code, out, _ = run_cli(monkeypatch, capfd, "cloud", "down", lab, stdin="n\n")
    assert code == 0 and "Nothing stopped." in out  # declined: no `ray down` in the log below
    code, _, err = run_cli(monkeypatch, capfd, "cloud", "down", lab, "--yes")
    assert code == 0, err
    calls = fake_tools()
    assert calls[0] == ("ray exec lab.yaml env RAY_AUTH_MODE=token /opt/alf/bin/python -m "
                        "autolfads.cloud.remote stop r1 auth=")
    assert calls[1] == "ray down -y lab.yaml auth="
    assert [c.split()[-5] for c in calls[2:]] == ["lab@10.1.2.4", "lab@10.1.2.5"]


def test_helper_error_is_the_one_error_line(lab, monkeypatch, capfd, fake_tools):
    """What the helper on the head refuses reaches the user as one line, without the
    launcher's chatter around it."""
    ray = Path(os.environ["PATH"].split(os.pathsep)[0]) / "ray"
    ray.write_text("#!/bin/sh\necho '2026-11-29 17:10:32,671\tVINFO command_runner.py:399 -- x'\n"
                   "echo 'error: run r1 exists at /nfs/autolfads/runs/r1; continue it with ...'\n"
                   "echo 'Shared connection to 10.1.2.3 closed.'\nexit 1\n")
    code, out, err = run_cli(monkeypatch, capfd, "cloud", "submit", lab, "--name", "r1")
    line = one_error(code, err, ["run r1 exists"])
    assert "VINFO" not in out and "Shared connection" not in out, out
    assert line.startswith("error: run r1 exists")
    ray.write_text("#!/bin/sh\nexit 3\n")
    one_error(*run_cli(monkeypatch, capfd, "cloud", "down", lab, "--yes")[::2],
              ["`ray down -y` failed with exit status 3"])


@pytest.mark.parametrize("args,words", [
    (["down", "cluster.yaml", "--yes"], ["`ray` not found", "autolfads[cluster]"]),
    (["download", "cluster.yaml", "s1"], ["`gcloud` not found", "cloud.google.com/sdk"]),
])
def test_missing_executable_says_what_to_install(cluster, monkeypatch, capsys, args, words):
    monkeypatch.setattr(lifecycle, "_executable", lambda name: None)
    one_error(*run_cli(monkeypatch, capsys, "cloud", *args)[::2], words)


def test_missing_google_client_only_matters_on_gcp(cluster, lab, monkeypatch, capsys,
                                                   fake_tools):
    monkeypatch.setattr(lifecycle, "_google_client_installed", lambda: False)
    line = one_error(*run_cli(monkeypatch, capsys, "cloud", "down", cluster, "--yes")[::2])
    assert "google-api-python-client" in line
    code, _, err = run_cli(monkeypatch, capsys, "cloud", "down", lab, "--yes")
    assert code == 0, err


# --- the helper on the head ------------------------------------------------------------------

class Job:
    def __init__(self, sid, status, start=1_700_000_000_000):
        self.submission_id, self.status, self.message, self.start_time = sid, status, "", start


class FakeClient:
    def __init__(self, jobs):
        self.jobs, self.submitted, self.stopped = jobs, [], []

    def list_jobs(self):
        return self.jobs

    def submit_job(self, entrypoint, submission_id):
        self.submitted.append((entrypoint, submission_id))
        return submission_id

    def stop_job(self, sid):
        self.stopped.append(sid)


@pytest.fixture
def client(monkeypatch):
    jobs = [Job("autolfads-s1-1", "FAILED"), Job("autolfads-s1-2", "STOPPED"),
            Job("autolfads-s10-1", "RUNNING"), Job("other", "RUNNING")]
    fake = FakeClient(jobs)
    monkeypatch.setattr(remote, "_client", lambda address: fake)
    return fake


def test_each_attempt_is_a_new_job(client, monkeypatch):
    assert [a.number for a in remote.attempts(client.jobs, "s1")] == [1, 2]  # not s10's
    monkeypatch.setattr(remote, "_run_exists", lambda run: True)
    said = remote.submit("s1", "gs://b/runs/s1", ["python", "-m", "autolfads.cli", "run",
                                                  "--resume"], True, "addr")
    assert client.submitted == [("python -m autolfads.cli run --resume", "autolfads-s1-3")]
    assert "attempt 3" in said
    with pytest.raises(remote.RemoteError, match="--resume s1"):
        remote.submit("s1", "gs://b/runs/s1", ["x"], False, "addr")  # would overwrite it
    monkeypatch.setattr(remote, "_run_exists", lambda run: False)
    with pytest.raises(remote.RemoteError, match="no run at"):
        remote.submit("s1", "gs://b/runs/s1", ["x"], True, "addr")
    with pytest.raises(remote.RemoteError, match="already going.*cloud stop"):
        remote.submit("s10", "gs://b/runs/s10", ["x"], False, "addr")


def test_stop_stops_the_live_attempt_only(client):
    assert "--resume s10" in remote.stop("s10", "addr")
    assert client.stopped == ["autolfads-s10-1"]
    with pytest.raises(remote.RemoteError, match="nothing to stop"):
        remote.stop("s1", "addr")


# `ray status` of an on-premise cluster with one host that cannot be reached, and of a GCP
# cluster whose GPU workers cannot be created (Ray's format_info_string layout).
STATUS_SSH = """======== Autoscaler status: 2026-11-29 17:10:32.100000 ========
Node status
---------------------------------------------------------------
Active:
 2 local.cluster.node
Pending:
 10.88.7.3: local.cluster.node, waiting-for-ssh
Recent failures:
 (no failures)

Resources
---------------------------------------------------------------
Total Usage:
 0.0/4.0 CPU
From request_resources:
 (none)
Pending Demands:
 (no resource demands)
"""
STATUS_QUOTA = """======== Autoscaler status: 2026-11-29 17:10:32.100000 ========
Node status
---------------------------------------------------------------
Active:
 1 head
Pending:
 gpu_worker, 8 launching
Recent failures:
 gpu_worker: HttpError (latest_attempt: 17:09:58)

Resources
---------------------------------------------------------------
Total Usage:
 0.0/0.0 CPU
Pending Demands:
 {'CPU': 1.0, 'GPU': 0.5}: 16+ pending tasks/actors
"""


def test_ray_status_is_read_and_explained(monkeypatch):
    monkeypatch.setattr(remote, "recent_launch_errors", lambda: [])
    view = remote.parse_ray_status(STATUS_SSH)
    assert view.active == ["2 local.cluster.node"] and view.failures == [] and not view.demands
    lines = remote.describe_nodes(view, age_s=30)
    assert lines[0] == ("nodes: 2 active (2 local.cluster.node), 1 pending, 0 recently "
                        "failed")
    assert lines[1].startswith("  pending: 10.88.7.3: local.cluster.node, waiting-for-ssh -> ")
    assert "SSH" in lines[1] and not any("NOTHING PLACED" in ln for ln in lines)

    monkeypatch.setattr(remote, "recent_launch_errors", lambda: [
        "googleapiclient.errors.HttpError: Quota 'NVIDIA_T4_GPUS' exceeded. Limit: 0.0 in "
        "region us-central1."])
    view = remote.parse_ray_status(STATUS_QUOTA)
    assert view.pending == ["gpu_worker, 8 launching"]
    assert view.demands == ["{'CPU': 1.0, 'GPU': 0.5}: 16+ pending tasks/actors"]
    early = remote.describe_nodes(view, age_s=20)
    assert not any("NOTHING PLACED" in ln for ln in early)  # still starting: no alarm yet
    lines = remote.describe_nodes(view, age_s=300)
    text = "\n".join(lines)
    assert "autoscaler error: googleapiclient.errors.HttpError: Quota 'NVIDIA_T4_GPUS'" in text
    assert "cloud doctor" in text  # the quota hint
    assert "NOTHING PLACED: no worker node has joined in 5 min" in text


# --- failures a first-time Google Cloud user meets (audit, 2026-11-30) ----------------------


@pytest.mark.parametrize("output,words", [
    ("googleapiclient.errors.HttpError: <HttpError 403 ... returned \"Quota 'NVIDIA_T4_GPUS' "
     "exceeded.  Limit: 0.0 in region us-central1.\"", ["raise quota NVIDIA_T4_GPUS in "
                                                        "us-central1 (now 0.0)",
                                                        "iam-admin/quotas"]),
    (" - The zone 'projects/p/zones/us-central1-a' does not have enough resources available",
     ["a stock-out", "another zone"]),
    ("HttpError 403: Compute Engine API has not been used in project 123 before or it is "
     "disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
     "compute.googleapis.com/overview?project=123",
     ["gcloud services enable compute.googleapis.com"]),
    (" - This API method requires billing to be enabled. Please enable billing for project p",
     ["billing is off", "billing/linkedaccount"]),
    ("ERROR: (gcloud.iam.service-accounts.create) PERMISSION_DENIED: Permission "
     "'iam.serviceAccounts.create' denied on resource (or it may not exist).",
     ["lacks the permission iam.serviceAccounts.create", "roles/editor"]),
    ("google.auth.exceptions.RefreshError: ('invalid_grant: reauth related error (invalid_rapt)')",
     ["login has expired", "gcloud auth login"]),
    ("google.auth.exceptions.DefaultCredentialsError: Your default credentials were not found.",
     ["gcloud auth application-default login"]),
    ("RuntimeError: Head node of cluster (autolfads-alice) not found!",
     ["no cluster of this YAML is running", "autolfads cloud up"]),
], ids=["quota", "stockout", "api", "billing", "permission", "reauth", "adc", "no head"])
def test_a_failed_command_names_the_cause_and_its_fix(tmp_path, monkeypatch, capfd, output,
                                                      words):
    """The cause is in the middle of the output (a traceback follows it); the error line names
    it with the fix, not just the exit status."""
    script = tmp_path / "out.txt"
    script.write_text(f"Traceback (most recent call last):\n{output}\n  File \"x.py\", line 1\n"
                      "Failed to setup head node.\n")
    cmd = lifecycle.Cmd(("sh", "-c", f"cat {script}; exit 1"))
    with pytest.raises(UserInputError) as e:
        lifecycle.execute([cmd])
    assert str(e.value).startswith("`sh -c cat")
    for w in words:
        assert w in str(e.value), str(e.value)
    assert remote.hint(output)  # the autoscaler's status lines get the same fixes


def test_up_that_fails_part_way_says_what_may_bill(cluster, monkeypatch, capfd, fake_tools):
    ray = Path(os.environ["PATH"].split(os.pathsep)[0]) / "ray"
    ray.write_text("#!/bin/sh\n[ \"$1\" = get-auth-token ] && exit 0\n"
                   "echo 'Failed to setup head node.'\nexit 1\n")
    line = one_error(*run_cli(monkeypatch, capfd, "cloud", "up", cluster, "--yes",
                              "--no-doctor")[::2])
    assert "may be partly up and billing: `autolfads cloud down cluster.yaml`" in line
    assert f"compute/instances?project={PROJECT}" in line


def test_down_works_on_a_yaml_without_its_bucket_and_says_what_stays(cluster, monkeypatch,
                                                                      capfd, fake_tools):
    cfg = yaml.safe_load(cluster.read_text())
    del cfg["metadata"]["autolfads"]["bucket"]
    cluster.write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli(monkeypatch, capfd, "cloud", "down", cluster, "--yes")
    assert code == 0, err
    assert fake_tools()[0] == "ray down -y cluster.yaml auth="
    # Then the VMs that outlived it are looked for (none here).
    assert fake_tools()[1] == (f"gcloud compute instances list --project {PROJECT} --filter "
                               "labels.ray-cluster-name=autolfads-alice --format "
                               "value(name,zone.basename(),status) auth=")
    assert "cluster VMs deleted: none of cluster autolfads-alice is left" in out
    assert "Still there: the bucket" in out
    assert (f"gcloud compute firewall-rules delete autolfads-alice-internal --project {PROJECT} "
            "--quiet") in out


def test_down_names_the_vms_that_outlived_it(cluster, monkeypatch, capfd, fake_tools):
    gcloud = Path(os.environ["PATH"].split(os.pathsep)[0]) / "gcloud"
    gcloud.write_text("#!/bin/sh\necho 'ray-autolfads-alice-worker-1a2b  us-central1-a  RUNNING'\n"
                      "echo 'ray-autolfads-alice-worker-3c4d  us-central1-b  TERMINATED'\n")
    code, out, err = run_cli(monkeypatch, capfd, "cloud", "down", cluster, "--yes")
    assert code == 0, err
    assert ("warning: 2 VM(s) of cluster autolfads-alice still exist and bill until deleted: "
            "ray-autolfads-alice-worker-1a2b (us-central1-a, RUNNING), "
            "ray-autolfads-alice-worker-3c4d (us-central1-b, TERMINATED)") in out
    assert (f"gcloud compute instances delete ray-autolfads-alice-worker-1a2b --zone "
            f"us-central1-a --project {PROJECT} --quiet; gcloud compute instances delete "
            f"ray-autolfads-alice-worker-3c4d --zone us-central1-b --project {PROJECT} "
            "--quiet") in out
    gcloud.write_text("#!/bin/sh\necho 'ERROR: (gcloud.compute.instances.list) "
                      "Reauthentication required.' >&2\nexit 1\n")
    code, out, err = run_cli(monkeypatch, capfd, "cloud", "down", cluster, "--yes")
    assert code == 0, err
    assert "could not list the cluster's VMs (ERROR: (gcloud.compute.instances.list) " \
           "Reauthentication required.); look for VMs named ray-autolfads-alice-*" in out


@pytest.mark.parametrize("edit,words", [
    (lambda n: n["guestAccelerators"][0].update(acceleratorCount="two"),
     ["a number was expected ('two' is not one)"]),
    (lambda n: n.update(tags=n["tags"]["items"]), ["an entry has the wrong form"]),
], ids=["count", "tags"])
def test_hand_edited_node_configs_of_the_wrong_type(cluster, monkeypatch, capsys, edit, words):
    cfg = yaml.safe_load(cluster.read_text())
    types = cfg["available_node_types"]
    edit(next(v for k, v in types.items() if k != cfg["head_node_type"])["node_config"])
    cluster.write_text(yaml.safe_dump(cfg))
    one_error(*run_cli(monkeypatch, capsys, "cloud", "validate", cluster)[::2], words)


def test_gcp_launch_failures_found_only_in_the_autoscalers_log(tmp_path, monkeypatch):
    """On GCP `ray status` shows nothing pending or failed when the cloud refuses a node; the
    monitor log's HttpError is the cause, reduced to Google's own words, and raises the alarm."""
    import ray._common.utils

    logs = tmp_path / "session_latest" / "logs"
    logs.mkdir(parents=True)
    (logs / "monitor.log").write_text(
        "2024-06-01 10:15:31,123\tINFO node_launcher.py:177 -- Failed to launch 1 node(s)\n"
        "    raise HttpError(resp, content, uri=self.uri)\n"
        "googleapiclient.errors.HttpError: <HttpError 400 when requesting https://compute."
        "googleapis.com/compute/v1/projects/p/zones/us-central1-d/instances?alt=json returned "
        "\"The user does not have access to service account 'w@p.iam.gserviceaccount.com'.  "
        "User: 'ray-autoscaler-sa-v1@p.iam.gserviceaccount.com'.\". Details: ...>\n")
    monkeypatch.setattr(ray._common.utils, "get_default_ray_temp_dir", lambda: str(tmp_path))
    errors = remote.recent_launch_errors()
    assert not any(e.startswith("raise ") for e in errors)
    assert errors[-1].startswith("The user does not have access to service account")
    view = remote.parse_ray_status(STATUS_QUOTA.replace("gpu_worker, 8 launching", ""))
    text = "\n".join(remote.describe_nodes(view, age_s=600))
    assert ("gcloud iam service-accounts add-iam-policy-binding w@p.iam.gserviceaccount.com "
            "--member serviceAccount:ray-autoscaler-sa-v1@p.iam.gserviceaccount.com") in text
    assert "NOTHING PLACED" in text
