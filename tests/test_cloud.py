"""`autolfads cloud`: the generated GCP cluster YAML passes Ray's own validator and our checks,
every bad field is one `error:` line, the lifecycle commands are exactly the expected `ray` /
`gcloud` invocations (dry run; and real runs against fake executables), and the cost estimate
follows the shipped price table. No network, no cloud credentials."""

import copy
import json
import os
import stat
from importlib import resources
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from autolfads.cloud import lifecycle
from autolfads.cloud.cluster import ClusterSpec, build_config, write_config
from autolfads.cloud.cost import estimate, load_prices

PROJECT, BUCKET = "my-lab-project", "gs://my-lab-autolfads"
INIT = ["cloud", "init", "--project", PROJECT, "--bucket", BUCKET]


def one_error(code: int, err: str, words=()) -> str:
    """Assert a single `error:` line (exit status 2) containing every one of `words`."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cluster(tmp_path, monkeypatch) -> Path:
    """The default generated cluster.yaml, in the test's (current) folder."""
    monkeypatch.chdir(tmp_path)
    spec = ClusterSpec(project=PROJECT, bucket=BUCKET).resolved()
    return write_config(build_config(spec), Path("cluster.yaml"))


# --- cluster config ---------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    [],
    ["--gpu-type", "nvidia-l4", "--spot", "--max-workers", "4"],
    ["--gpu-type", "nvidia-tesla-v100", "--gpus-per-worker", "2", "--zone", "europe-west4-a"],
    ["--gpu-type", "nvidia-tesla-a100", "--min-workers", "1", "--launcher-in-vpc"],
])
def test_generated_yaml_passes_ray_validator(tmp_path, monkeypatch, capsys, flags):
    from ray.autoscaler._private.util import prepare_config, validate_config

    out = tmp_path / "c.yaml"
    code, stdout, err = run_cli(monkeypatch, capsys, *INIT, "--out", out, *flags)
    assert code == 0, err
    cfg = yaml.safe_load(out.read_text())
    validate_config(prepare_config(copy.deepcopy(cfg)))  # Ray's own check, raises if bad
    text = yaml.safe_dump(cfg)  # the settings, without the header comment
    # Nothing exposed: internal IPs between nodes, dashboard on loopback, no firewall rules.
    assert "0.0.0.0" not in text and "firewall" not in text.lower()
    assert cfg["provider"]["use_internal_ips"] is True
    external_head = "--launcher-in-vpc" not in flags
    assert cfg["provider"].get("use_external_head_ip", False) is external_head
    assert "--dashboard-host=127.0.0.1" in cfg["head_start_ray_commands"][1]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "export RAY_AUTH_MODE=token" in cfg[key][1]
    assert cfg["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    # The head only coordinates; GPU workers run our image.
    head, worker = cfg["available_node_types"]["head"], cfg["available_node_types"]["gpu_worker"]
    assert head["resources"] == {"CPU": 0}
    assert worker["resources"]["GPU"] >= 1
    assert worker["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert (worker["node_config"]["scheduling"].get("provisioningModel") == "SPOT") is (
        "--spot" in flags)
    assert cfg["docker"]["image"] == (
        f"{cfg['provider']['region']}-docker.pkg.dev/{PROJECT}/autolfads/autolfads:0.1.0")
    assert cfg["metadata"]["autolfads"]["bucket"] == BUCKET
    code, stdout, err = run_cli(monkeypatch, capsys, "cloud", "validate", out)
    assert code == 0 and "ok" in stdout, err


@pytest.mark.parametrize("flags,words", [
    (["--project", "My_Project"], ["--project", "My_Project", "project id"]),
    (["--zone", "us-central1"], ["--zone", "region", "us-central1-a"]),
    (["--zone", "uscentral1-a"], ["--zone", "not a GCP zone"]),
    (["--region", "us-east1"], ["--region", "us-central1"]),
    (["--gpu-type", "nvidia-tesla-x99"], ["--gpu-type", "nvidia-tesla-x99", "nvidia-tesla-t4"]),
    (["--gpu-type", "nvidia-tesla-k80"], ["k80", "retired", "nvidia-l4"]),
    (["--gpus-per-worker", "3"], ["--gpus-per-worker 3", "1, 2, 4"]),
    (["--gpu-type", "nvidia-l4", "--worker-machine-type", "n1-standard-8"],
     ["n1-standard-8", "g2-standard-4"]),
    (["--worker-machine-type", "g2-standard-4"], ["g2-standard-4", "N1"]),
    (["--worker-machine-type", "n1-huge"], ["n1-huge", "machine type"]),
    (["--head-machine-type", "a2-highgpu-1g"], ["--head-machine-type", "no GPU"]),
    (["--min-workers", "5", "--max-workers", "2"], ["--min-workers 5", "--max-workers 2"]),
    (["--disk-gb", "20"], ["--disk-gb 20", "50"]),
    (["--bucket", "my-bucket"], ["--bucket", "gs://"]),
    (["--image", "autolfads:0.1.0"], ["--image", "registry"]),
    (["--cluster-name", "My Cluster"], ["--cluster-name", "lowercase"]),
])
def test_bad_init_flag_is_one_error_line(tmp_path, monkeypatch, capsys, flags, words):
    out = tmp_path / "c.yaml"
    code, _, err = run_cli(monkeypatch, capsys, *INIT, "--out", out, *flags)
    one_error(code, err, words)
    assert not out.exists()


def _set(cfg, dotted, value):
    *parents, last = dotted.split(".")
    cur = cfg
    for p in parents:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    if value is DELETE:
        del cur[last]
    else:
        cur[last] = value


DELETE = object()
W = "available_node_types.gpu_worker"
WN = f"{W}.node_config"


@pytest.mark.parametrize("path,value,words", [
    ("colour", "blue", ["colour", "Ray's cluster schema"]),
    ("max_workers", "eight", ["max_workers", "'eight'", "Ray's cluster schema"]),
    (f"{W}.min_workers", 9, ["max_workers", "min_workers"]),
    ("provider.type", "aws", ["provider.type", "gcp"]),
    ("provider.project_id", "x", ["provider.project_id", "project id"]),
    ("provider.availability_zone", "us-central1", ["provider.availability_zone", "zone"]),
    ("provider.region", "europe-west4", ["provider.region", "us-central1"]),
    (f"{WN}.machineType", "n1-standard", ["machineType", "n1-standard"]),
    (f"{WN}.guestAccelerators.0.acceleratorType", "nvidia-tesla-t5",
     ["acceleratorType", "nvidia-tesla-t5"]),
    (f"{WN}.guestAccelerators.0.acceleratorCount", 3, ["acceleratorCount 3", "1, 2, 4"]),
    (f"{WN}.guestAccelerators", DELETE, ["gpu_worker", "no GPU"]),
    (f"{WN}.scheduling", {"automaticRestart": False}, ["scheduling", "TERMINATE"]),
    (f"{W}.resources.GPU", 2, ["resources.GPU 2", "1 GPU"]),
    ("available_node_types.head.resources.CPU", 4, ["head", "CPU: 0"]),
    ("head_node_type", "boss", ["head_node_type", "boss"]),
    (f"{WN}.disks.0.initializeParams.diskSizeGb", 10, ["diskSizeGb 10", "50"]),
    ("docker.image", "autolfads:0.1.0", ["docker.image", "registry"]),
    ("metadata.autolfads.bucket", "s3://x", ["metadata.autolfads.bucket", "gs://"]),
    ("head_start_ray_commands", ["ray stop", "export RAY_AUTH_MODE=token; ray start --head "
                                 "--dashboard-host=0.0.0.0"], ["0.0.0.0", "ray dashboard"]),
    ("worker_start_ray_commands", ["ray stop", "ray start --address=$RAY_HEAD_IP:6379"],
     ["worker_start_ray_commands", "RAY_AUTH_MODE=token"]),
])
def test_broken_yaml_field_is_one_error_line(cluster, monkeypatch, capsys, path, value, words):
    cfg = yaml.safe_load(cluster.read_text())
    _set(cfg, path, value)
    bad = Path("bad.yaml")
    bad.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(monkeypatch, capsys, "cloud", "validate", bad)
    line = one_error(code, err, words)
    assert line.startswith("error: bad.yaml:"), line


def test_validate_unreadable_yaml(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("provider: {type: gcp\n")
    line = one_error(*run_cli(monkeypatch, capsys, "cloud", "validate", bad)[::2])
    assert "broken.yaml" in line and "YAML" in line
    line = one_error(*run_cli(monkeypatch, capsys, "cloud", "validate", tmp_path / "no.yaml")
                     [::2])
    assert "not found" in line


def test_no_overwrite_without_force(cluster, monkeypatch, capsys):
    before = cluster.read_text()
    code, _, err = run_cli(monkeypatch, capsys, *INIT, "--gpu-type", "nvidia-l4")
    line = one_error(code, err)
    assert "cluster.yaml" in line and "--force" in line
    assert cluster.read_text() == before
    code, _, err = run_cli(monkeypatch, capsys, *INIT, "--gpu-type", "nvidia-l4", "--force")
    assert code == 0, err
    assert "g2-standard-4" in cluster.read_text() and cluster.read_text() != before


# --- lifecycle commands -------------------------------------------------------------------------

EXEC = "ray exec cluster.yaml 'env RAY_AUTH_MODE=token ray job"
HEAD_JOBS = "--address http://127.0.0.1:8265"


def test_up_dry_run_prints_estimate_and_commands(cluster, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "up", cluster, "--hours", "2.5",
                             "--dry-run")
    assert code == 0, err
    assert "Estimated cost at full size: 8 x nvidia-tesla-t4 on-demand" in out
    assert "$    11.78" in out and "2024-06-01" in out
    assert out.strip().splitlines()[-2:] == ["ray get-auth-token --generate",
                                             "ray up -y cluster.yaml"]


def test_submit_dry_run_commands(cluster, monkeypatch, capsys):
    Path("session.mat").write_bytes(b"x")
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "submit", cluster, "session.mat",
                             "--name", "s1", "--workers-per-gpu", "2", "--dry-run", "--",
                             "--population", "16")
    assert code == 0, err
    assert out.splitlines() == [
        f"gcloud storage cp session.mat {BUCKET}/data/s1/session.mat",
        f"{EXEC} submit {HEAD_JOBS} --submission-id autolfads-s1 --no-wait -- autolfads run "
        f"{BUCKET}/data/s1/session.mat --out {BUCKET}/runs/s1 --address auto "
        "--workers-per-gpu 2 --population 16'",
    ]


def test_submit_without_data_passes_options_to_run(cluster, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "submit", cluster, "--name", "s2",
                             "--dry-run", "--", "--population", "4", "--generations", "3")
    assert code == 0, err
    assert out.splitlines() == [
        f"{EXEC} submit {HEAD_JOBS} --submission-id autolfads-s2 --no-wait -- autolfads run "
        f"--out {BUCKET}/runs/s2 --address auto --workers-per-gpu 1 --population 4 "
        "--generations 3'"]


def test_submit_commands_exact_argv():
    cfg = Path("c.yaml")
    [cmd] = lifecycle.submit_commands(cfg, BUCKET, "lz", "gs://b/d.h5", ["--generations", "3"])
    assert cmd.argv == ("ray", "exec", "c.yaml",
                        "env RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 "
                        "--submission-id autolfads-lz --no-wait -- autolfads run gs://b/d.h5 "
                        f"--out {BUCKET}/runs/lz --address auto --workers-per-gpu 1 "
                        "--generations 3")
    # Through the user's own `ray dashboard` tunnel: runs here, with token auth in the env.
    [cmd] = lifecycle.submit_commands(cfg, BUCKET, "lz", None, address="http://127.0.0.1:8265",
                                      working_dir="cfgdir")
    assert cmd.env == (("RAY_AUTH_MODE", "token"),)
    assert cmd.argv == ("ray", "job", "submit", "--address", "http://127.0.0.1:8265",
                        "--submission-id", "autolfads-lz", "--no-wait", "--working-dir",
                        "cfgdir", "--", "autolfads", "run", "--out", f"{BUCKET}/runs/lz",
                        "--address", "auto", "--workers-per-gpu", "1")


@pytest.mark.parametrize("args,expected", [
    ([], [f"{EXEC} list {HEAD_JOBS}'"]),
    (["s1"], [f"{EXEC} status {HEAD_JOBS} autolfads-s1'"]),
    (["s1", "--logs"], [f"{EXEC} status {HEAD_JOBS} autolfads-s1'",
                        f"{EXEC} logs {HEAD_JOBS} autolfads-s1'"]),
    (["s1", "--follow"], [f"{EXEC} status {HEAD_JOBS} autolfads-s1'",
                          f"{EXEC} logs {HEAD_JOBS} --follow autolfads-s1'"]),
    (["s1", "--address", "http://127.0.0.1:8265"],
     ["RAY_AUTH_MODE=token ray job status --address http://127.0.0.1:8265 autolfads-s1"]),
])
def test_status_dry_run_commands(cluster, monkeypatch, capsys, args, expected):
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "status", cluster, *args,
                             "--dry-run")
    assert code == 0, err
    assert out.splitlines() == expected


def test_download_and_down_dry_run_commands(cluster, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "download", cluster, "s1",
                             "--dest", "results", "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [f"gcloud storage cp -r {BUCKET}/runs/s1 results"]
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "down", cluster, "--dry-run")
    assert code == 0, err
    assert out.splitlines() == ["ray down -y cluster.yaml"]


@pytest.mark.parametrize("args,words", [
    (["submit", "cluster.yaml", "nope.mat", "--name", "a"], ["nope.mat", "not found"]),
    (["submit", "cluster.yaml", "--name", "a b"], ["--name", "'a b'"]),
    (["submit", "cluster.yaml", "--name", "a", "--working-dir", "."], ["--working-dir",
                                                                       "--address"]),
    (["download", "cluster.yaml", "s1", "--bucket", "bucket"], ["--bucket", "gs://"]),
    (["submit", "cluster.yaml", "--name", "a", "--", "--out", "x"], ["--out", "--name"]),
])
def test_lifecycle_bad_input(cluster, monkeypatch, capsys, args, words):
    one_error(*run_cli(monkeypatch, capsys, "cloud", *args, "--dry-run")[::2], words)


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """`ray` and `gcloud` stand-ins that log their arguments (and RAY_AUTH_MODE)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("ray", "gcloud"):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\necho "{name} $* auth=$RAY_AUTH_MODE" >> {log}\n'
                       '[ "$1" = get-auth-token ] && echo SECRET-TOKEN\nexit 0\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setattr(lifecycle, "_google_client_installed", lambda: True)
    return lambda: log.read_text().splitlines() if log.exists() else []


def test_up_asks_and_runs_the_commands(cluster, monkeypatch, capfd, fake_tools):
    code, out, _ = run_cli(monkeypatch, capfd, "cloud", "up", cluster, stdin="n\n")
    assert code == 0 and "Start this cluster?" in out and "Not started." in out
    assert fake_tools() == []
    code, out, err = run_cli(monkeypatch, capfd, "cloud", "up", cluster, "--yes")
    assert code == 0, err
    assert fake_tools() == ["ray get-auth-token --generate auth=", "ray up -y cluster.yaml auth="]
    assert "SECRET-TOKEN" not in out + err  # the token never reaches the terminal


def test_real_commands_run_in_order(cluster, monkeypatch, capfd, fake_tools):
    code, _, err = run_cli(monkeypatch, capfd, "cloud", "status", cluster, "s1",
                           "--address", "http://127.0.0.1:8265")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capfd, "cloud", "download", cluster, "s1",
                             "--dest", "results")
    assert code == 0 and Path("results").is_dir(), err
    code, out, _ = run_cli(monkeypatch, capfd, "cloud", "down", cluster, stdin="n\n")
    assert code == 0 and "Nothing deleted." in out  # declined: no `ray down` in the log below
    code, _, err = run_cli(monkeypatch, capfd, "cloud", "down", cluster, "--yes")
    assert code == 0, err
    assert fake_tools() == [
        "ray job status --address http://127.0.0.1:8265 autolfads-s1 auth=token",
        f"gcloud storage cp -r {BUCKET}/runs/s1 results auth=",
        "ray down -y cluster.yaml auth=",
    ]


@pytest.mark.parametrize("args,words", [
    (["down", "cluster.yaml", "--yes"], ["`ray` not found", "pip install", "ray[default]"]),
    (["download", "cluster.yaml", "s1"], ["`gcloud` not found", "cloud.google.com/sdk"]),
])
def test_missing_executable_says_what_to_install(cluster, monkeypatch, capsys, args, words):
    monkeypatch.setattr(lifecycle, "_executable", lambda name: None)
    one_error(*run_cli(monkeypatch, capsys, "cloud", *args)[::2], words)


def test_missing_google_client_and_failed_command(cluster, monkeypatch, capsys, fake_tools):
    monkeypatch.setattr(lifecycle, "_google_client_installed", lambda: False)
    line = one_error(*run_cli(monkeypatch, capsys, "cloud", "down", cluster, "--yes")[::2])
    assert "google-api-python-client" in line
    monkeypatch.setattr(lifecycle, "_google_client_installed", lambda: True)
    (Path(os.environ["PATH"].split(os.pathsep)[0]) / "ray").write_text("#!/bin/sh\nexit 3\n")
    line = one_error(*run_cli(monkeypatch, capsys, "cloud", "down", cluster, "--yes")[::2])
    assert "`ray down -y` failed with exit status 3" in line


# --- cost ---------------------------------------------------------------------------------------

TABLE = yaml.safe_load(resources.files("autolfads.cloud").joinpath("prices.yaml").read_text())
# The tutorial's run: 8 GPUs for 2.5 h, one GPU per worker VM. Totals in USD from the table of
# 2024-06-01 (GPU + worker VMs + n1-standard-4 head + 9 x 100 GB pd-balanced + 10 GB bucket).
TUTORIAL = [
    ("nvidia-tesla-k80", False, "n1-standard-4", 13.78),
    ("nvidia-tesla-k80", True, "n1-standard-4", 4.48),
    ("nvidia-tesla-t4", False, "n1-standard-4", 11.78),
    ("nvidia-tesla-t4", True, "n1-standard-4", 3.98),
    ("nvidia-l4", False, "g2-standard-4", 15.12),
    ("nvidia-l4", True, "g2-standard-4", 6.64),
]


@pytest.mark.parametrize("gpu,spot,vm,total", TUTORIAL)
def test_cost_of_the_tutorial_run(gpu, spot, vm, total):
    est = estimate(8, gpu, 2.5, spot)
    kind = "spot" if spot else "on_demand"
    assert est.get("GPUs") == pytest.approx(8 * TABLE["gpu_per_hour"][gpu][kind] * 2.5)
    assert est.get("VMs") == pytest.approx(8 * TABLE["vm_per_hour"][vm][kind] * 2.5)
    assert est.get("head") == pytest.approx(TABLE["vm_per_hour"]["n1-standard-4"]["on_demand"]
                                            * 2.5)
    assert est.get("disks") == pytest.approx(9 * 100 * TABLE["disk_per_gb_month"]["pd-balanced"]
                                             * 2.5 / 730)
    assert est.get("bucket") == pytest.approx(10 * TABLE["bucket_per_gb_month"])
    assert round(est.total, 2) == total
    assert est.date == TABLE["date"] == "2024-06-01"


def test_cost_cli_prints_breakdown_and_date(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "8", "--gpu-type",
                             "nvidia-tesla-k80", "--hours", "2.5", "--spot")
    assert code == 0, err
    for word in ("GPUs", "VMs", "head", "disks", "bucket", "total", "$     4.48",
                 "Price table date: 2024-06-01", "retired"):
        assert word in out, out


def test_user_price_file_overrides(tmp_path, monkeypatch, capsys):
    user = tmp_path / "my_prices.json"
    user.write_text(json.dumps({"date": "2025-01-15", "gpu_per_hour": {
        "nvidia-tesla-t4": {"on_demand": 0.40, "spot": 0.15}}}))
    est = estimate(8, "nvidia-tesla-t4", 2.5, prices=load_prices(user))
    assert est.get("GPUs") == pytest.approx(8.0)
    assert est.get("VMs") == pytest.approx(8 * 0.19 * 2.5)  # untouched entries stay
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "8", "--gpu-type",
                             "nvidia-tesla-t4", "--hours", "2.5", "--prices", user)
    assert code == 0, err
    assert "2024-06-01 / 2025-01-15 (my_prices.json)" in out and "$     8.00" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu_per_hour: {}\n")
    line = one_error(*run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "1", "--gpu-type",
                              "nvidia-tesla-t4", "--hours", "1", "--prices", bad)[::2])
    assert "bad.yaml" in line and "date" in line


@pytest.mark.parametrize("args,words", [
    (["--gpus", "0"], ["--gpus 0"]),
    (["--hours", "0"], ["--hours 0"]),
    (["--gpu-type", "nvidia-h100-80gb"], ["nvidia-h100-80gb", "--prices"]),
])
def test_cost_bad_input(monkeypatch, capsys, args, words):
    base = {"--gpus": "8", "--gpu-type": "nvidia-tesla-t4", "--hours": "2.5"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in base.items() for x in kv]
    one_error(*run_cli(monkeypatch, capsys, "cloud", "cost", *flat)[::2], words)


def test_up_without_a_price_still_offers_to_start(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *INIT, "--gpu-type", "nvidia-h100-80gb",
                           "--gpus-per-worker", "8")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "up", "cluster.yaml", "--dry-run")
    assert code == 0, err
    assert "cost estimate unavailable" in out and "ray up -y cluster.yaml" in out
