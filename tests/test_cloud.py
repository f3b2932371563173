"""`autolfads cloud`: the generated GCP cluster YAML passes Ray's own validator and our checks,
every bad field is one `error:` line, and the cost estimate follows the shipped price table (the
lifecycle commands: test_cloud_commands.py). No network, no cloud credentials."""

import copy
import json
from importlib import resources
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from autolfads.cloud import gcp
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
    ["--gpu-type", "l4", "--spot", "--max-workers", "4"],
    ["--gpu-type", "nvidia-tesla-v100", "--gpus-per-worker", "2", "--zone", "europe-west4-a"],
    ["--gpu-type", "a100", "--min-workers", "1", "--launcher-in-vpc"],
    ["--image", "us-central1-docker.pkg.dev/my-lab-project/autolfads/autolfads:0.1.0"],
])
def test_generated_yaml_passes_ray_validator(tmp_path, monkeypatch, capsys, flags):
    from ray.autoscaler._private.util import prepare_config, validate_config

    monkeypatch.setenv("USER", "alice")
    out = tmp_path / "c.yaml"
    code, stdout, err = run_cli(monkeypatch, capsys, *INIT, "--out", out, *flags)
    assert code == 0, err
    cfg = yaml.safe_load(out.read_text())
    validate_config(prepare_config(copy.deepcopy(cfg)))  # Ray's own check, raises if bad
    text = yaml.safe_dump(cfg)  # the settings, without the header comment
    assert cfg["cluster_name"] == "autolfads-alice"
    # Nothing exposed: internal IPs between nodes, dashboard on loopback, token auth on.
    assert "0.0.0.0" not in text
    assert cfg["provider"]["use_internal_ips"] is True
    external_head = "--launcher-in-vpc" not in flags
    assert cfg["provider"].get("use_external_head_ip", False) is external_head
    assert "--dashboard-host=127.0.0.1" in cfg["head_start_ray_commands"][1]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "export RAY_AUTH_MODE=token" in cfg[key][1]
    # The head only coordinates; GPU workers, no external IP, the cluster's own account.
    head, worker = cfg["available_node_types"]["head"], cfg["available_node_types"]["gpu_worker"]
    assert head["resources"] == {"CPU": 0}
    assert worker["resources"]["GPU"] >= 1
    assert worker["node_config"]["networkInterfaces"] == [{"network": "global/networks/default"}]
    head_nic = {"network": "global/networks/default"}
    if external_head:
        head_nic["accessConfigs"] = [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    assert head["node_config"]["networkInterfaces"] == [head_nic]
    for nt in (head, worker):
        assert nt["node_config"]["tags"] == {"items": ["autolfads-alice"]}
    assert worker["node_config"]["serviceAccounts"] == [{
        "email": f"autolfads-alice-worker@{PROJECT}.iam.gserviceaccount.com",
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}]
    assert "serviceAccounts" not in head["node_config"]  # Ray's autoscaler account (`ray up`)
    assert worker["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert (worker["node_config"]["scheduling"].get("provisioningModel") == "SPOT") is (
        "--spot" in flags)
    meta = cfg["metadata"]["autolfads"]
    assert meta["bucket"] == BUCKET and meta["network_tag"] == "autolfads-alice"
    if "--image" in flags:
        assert cfg["docker"]["image"] == flags[1]
        assert meta["python"] == "python" and "wheel_dir" not in meta
        assert cfg["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
        assert cfg["head_setup_commands"] == cfg["worker_setup_commands"] == []
    else:
        # No image: the stock host image, and `cloud up` builds the wheel beside the YAML.
        wheel_dir = str(tmp_path.resolve() / "autolfads-wheel")
        assert "docker" not in cfg
        assert meta["python"] == "~/autolfads-venv/bin/python" and meta["wheel_dir"] == wheel_dir
        assert cfg["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token",
                                      "~/autolfads-wheel": wheel_dir}
        assert "google-api-python-client" in cfg["head_setup_commands"][-1]
        assert "torch==2.13.0 --extra-index-url" in " ".join(cfg["head_setup_commands"])
        # PyPI's CUDA build has no V100 (compute capability 7.0) kernels: its CUDA 12.6 build.
        torch_line = ("~/autolfads-venv/bin/pip install -q torch==2.13.0 --index-url "
                      "https://download.pytorch.org/whl/cu126" if "nvidia-tesla-v100" in flags
                      else "~/autolfads-venv/bin/pip install -q torch==2.13.0")
        assert torch_line in cfg["worker_setup_commands"]
    code, stdout, err = run_cli(monkeypatch, capsys, "cloud", "validate", out)
    assert code == 0 and "ok" in stdout, err


@pytest.mark.parametrize("flags,words", [
    (["--project", "My_Project"], ["--project", "My_Project", "project id"]),
    (["--zone", "us-central1"], ["--zone", "region", "us-central1-a"]),
    (["--zone", "uscentral1-a"], ["--zone", "not a GCP zone"]),
    (["--region", "us-east1"], ["--region", "us-central1"]),
    (["--gpu-type", "nvidia-tesla-x99"], ["--gpu-type", "nvidia-tesla-x99",
                                           "t4 (nvidia-tesla-t4)", "h100 (nvidia-h100-80gb)"]),
    (["--gpu-type", "k80"], ["nvidia-tesla-k80", "retired"]),
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
    ("docker", {"image": "autolfads:0.1.0"}, ["docker.image", "registry"]),
    ("metadata.autolfads.python", DELETE, ["metadata.autolfads.python", "docker.image"]),
    (f"{WN}.guestAccelerators.0.acceleratorType", "t4", ["acceleratorType 't4'",
                                                         "nvidia-tesla-t4"]),
    # What would be open: each names the field and how to close it.
    (f"{WN}.networkInterfaces", DELETE, ["networkInterfaces", "external IP", "accessConfigs"]),
    (f"{WN}.networkInterfaces.0.accessConfigs", [{"type": "ONE_TO_ONE_NAT"}],
     ["gpu_worker.node_config.networkInterfaces", "external IP"]),
    (f"{WN}.tags", DELETE, ["gpu_worker.node_config.tags", "network tag"]),
    ("available_node_types.head.node_config.tags", {"items": ["other"]},
     ["head.node_config.tags", "firewall"]),
    ("metadata.autolfads.network_tag", DELETE, ["network_tag", "firewall"]),
    ("provider.use_internal_ips", False, ["use_internal_ips", "internal"]),
    (f"{WN}.serviceAccounts", DELETE, ["serviceAccounts", "default compute account"]),
    (f"{WN}.serviceAccounts.0.email", f"ray-autoscaler-sa-v1@{PROJECT}.iam.gserviceaccount.com",
     ["serviceAccounts ray-autoscaler-sa-v1@", "create VMs"]),
    (f"{WN}.serviceAccounts.0.email", "123-compute@developer.gserviceaccount.com",
     ["123-compute@developer.gserviceaccount.com", "whole project"]),
    ("available_node_types.head.node_config.networkInterfaces", [{"network": "x"}],
     ["head.node_config.networkInterfaces", "use_external_head_ip"]),
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


# --- cost ---------------------------------------------------------------------------------------

TABLE = yaml.safe_load(resources.files("autolfads.cloud").joinpath("prices.yaml").read_text())
# The tutorial's run: 8 GPUs for 2.5 h, one GPU per worker VM, 100 GB disks, 10 GB in the bucket.
# Totals in USD from the table of 2024-06-01, with what the bill holds beyond the run itself:
# - each of the 8 workers is billed 2.5 h + 10 min boot (driver, CUDA PyTorch) + 10 min idle
#   timeout = 2.8333 h of GPU, VM and disk;
# - the n1-standard-4 head (on demand) runs 2.5 h + 0.5 h overhead = 3 h, with its disk and its
#   external IP ($0.005/h: $0.015);
# - Cloud NAT for the workers: 8 x 2.8333 h x $0.0014 + 8 x 3 GB x $0.045 + its IP 3 h x
#   $0.005 = $1.1267;
# - disks: (8 x 2.8333 + 3) h x 100 GB x $0.10 / 730 = $0.3516; bucket 10 GB x $0.02 = $0.20.
# T4 on demand: 8 x 0.35 x 2.8333 = 7.9333 + 8 x 0.19 x 2.8333 = 4.3067 + head 0.57 + 0.3516
# + 0.015 + 1.1267 + 0.20 = 14.50 (the run alone, 2.5 h of GPUs and VMs: 10.80).
WORKER_H, HEAD_H, OTHERS = 2.5 + 20 / 60, 3.0, 0.57 + 0.3516 + 0.015 + 1.1267 + 0.20
TUTORIAL = [
    ("nvidia-tesla-k80", False, "n1-standard-4", 16.77),
    ("nvidia-tesla-k80", True, "n1-standard-4", 6.23),
    ("nvidia-tesla-t4", False, "n1-standard-4", 14.50),
    ("t4", True, "n1-standard-4", 5.66),  # the short name people type
    ("nvidia-l4", False, "g2-standard-4", 18.28),
    ("l4", True, "g2-standard-4", 8.67),
]


@pytest.mark.parametrize("gpu,spot,vm,total", TUTORIAL)
def test_cost_of_the_tutorial_run(gpu, spot, vm, total):
    est = estimate(8, gpu, 2.5, spot)
    kind = "spot" if spot else "on_demand"
    name = gcp.gpu_name(gpu)
    assert est.get("GPUs") == pytest.approx(8 * TABLE["gpu_per_hour"][name][kind] * WORKER_H)
    assert est.get("VMs") == pytest.approx(8 * TABLE["vm_per_hour"][vm][kind] * WORKER_H)
    assert est.get("head") == pytest.approx(TABLE["vm_per_hour"]["n1-standard-4"]["on_demand"]
                                            * HEAD_H)
    assert est.get("disks") == pytest.approx((8 * WORKER_H + HEAD_H) * 100 * TABLE[
        "disk_per_gb_month"]["pd-balanced"] / 730)
    assert est.get("IPs") == pytest.approx(0.005 * HEAD_H)  # the head's only
    assert est.get("NAT") == pytest.approx(8 * WORKER_H * 0.0014 + 8 * 3 * 0.045 + 3 * 0.005)
    assert est.get("bucket") == pytest.approx(10 * TABLE["bucket_per_gb_month"])
    assert est.total == pytest.approx(est.get("GPUs") + est.get("VMs") + OTHERS, abs=1e-3)
    assert round(est.total, 2) == total
    assert est.date == TABLE["date"] == "2024-06-01"
    assert est.title.startswith(f"Estimated cost: 8 x {name} ")


def test_cost_parameters_change_what_is_billed():
    base = estimate(8, "t4", 2.5)
    # No boot or idle time: workers billed for the run alone.
    bare = estimate(8, "t4", 2.5, boot_minutes=0, idle_minutes=0, head_overhead_hours=0)
    assert bare.get("GPUs") == pytest.approx(8 * 0.35 * 2.5)
    assert bare.get("head") == pytest.approx(0.19 * 2.5)
    # An image from Artifact Registry (Private Google Access) carries no GB through the NAT.
    image = estimate(8, "t4", 2.5, nat_gb_per_worker=0)
    assert base.get("NAT") - image.get("NAT") == pytest.approx(8 * 3 * 0.045)
    # Workers with external IPs (a hand-edited YAML): no NAT, 9 addresses; spot ones cheaper.
    open_ = estimate(8, "t4", 2.5, True, worker_external_ip=True)
    assert open_.get("NAT") == 0 and "NAT" not in open_.render()
    assert open_.get("IPs") == pytest.approx(0.005 * HEAD_H + 8 * 0.0025 * WORKER_H)


@pytest.mark.parametrize("zone,note", [
    ("us-central1-a", False), ("us-east1-b", False), ("us-west1-b", False),
    ("europe-west4-a", True), ("asia-east1-a", True),
])
def test_cost_names_the_region_its_prices_are_for(monkeypatch, capsys, zone, note):
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "8", "--gpu-type",
                             "t4", "--hours", "2.5", "--zone", zone)
    assert code == 0, err
    assert "(us-central1 prices):" in out.splitlines()[0]
    region = zone.rsplit("-", 1)[0]
    line = f"Note: prices for us-central1; your region {region} may differ"
    assert (line in out) is note, out


def test_cost_cli_prints_breakdown_and_date(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "8", "--gpu-type",
                             "k80", "--hours", "2.5", "--spot")
    assert code == 0, err
    for word in ("GPUs", "VMs", "head", "disks", "IPs", "NAT", "bucket", "total", "$     6.23",
                 "Price table date: 2024-06-01", "retired",
                 "each worker is billed 2.83 h: 10 min boot (driver, install or image pull) + "
                 "2.5 h run + 10 min idle timeout; the head 3 h"):
        assert word in out, out
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "8", "--gpu-type",
                             "k80", "--hours", "2.5", "--spot", "--boot-minutes", "0",
                             "--idle-minutes", "0", "--overhead-hours", "0",
                             "--nat-gb-per-worker", "0")
    assert code == 0, err
    # The run alone: 8 x (0.135 + 0.04) x 2.5 + head 0.475 + disks 0.3082 + IP 0.0125
    # + NAT (8 x 2.5 x 0.0014 + 2.5 x 0.005 = 0.0405) + bucket 0.20 = 4.54.
    assert "$     4.54" in out.splitlines()[-4], out


def test_user_price_file_overrides(tmp_path, monkeypatch, capsys):
    user = tmp_path / "my_prices.json"
    user.write_text(json.dumps({"date": "2025-01-15", "gpu_per_hour": {
        "nvidia-tesla-t4": {"on_demand": 0.40, "spot": 0.15}}}))
    est = estimate(8, "nvidia-tesla-t4", 2.5, prices=load_prices(user))
    assert est.get("GPUs") == pytest.approx(8 * 0.40 * WORKER_H)
    assert est.get("VMs") == pytest.approx(8 * 0.19 * WORKER_H)  # untouched entries stay
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "8", "--gpu-type",
                             "nvidia-tesla-t4", "--hours", "2.5", "--prices", user)
    assert code == 0, err
    assert "2024-06-01 / 2025-01-15 (my_prices.json)" in out and "$     9.07" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu_per_hour: {}\n")
    line = one_error(*run_cli(monkeypatch, capsys, "cloud", "cost", "--gpus", "1", "--gpu-type",
                              "nvidia-tesla-t4", "--hours", "1", "--prices", bad)[::2])
    assert "bad.yaml" in line and "date" in line


@pytest.mark.parametrize("args,words", [
    (["--gpus", "0"], ["--gpus 0"]),
    (["--hours", "0"], ["--hours 0"]),
    (["--gpu-type", "h100"], ["nvidia-h100-80gb", "--prices"]),
    (["--gpu-type", "x99"], ["--gpu-type", "'x99'", "t4 (nvidia-tesla-t4)"]),
    (["--zone", "europe-west4"], ["--zone", "region", "-a"]),
    (["--boot-minutes", "-5"], ["--boot-minutes", "negative"]),
])
def test_cost_bad_input(monkeypatch, capsys, args, words):
    base = {"--gpus": "8", "--gpu-type": "nvidia-tesla-t4", "--hours": "2.5"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in base.items() for x in kv]
    one_error(*run_cli(monkeypatch, capsys, "cloud", "cost", *flat)[::2], words)


def test_up_without_a_price_still_offers_to_start(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *INIT, "--gpu-type", "h100",
                           "--gpus-per-worker", "8")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "up", "cluster.yaml", "--dry-run")
    assert code == 0, err
    assert "NO COST ESTIMATE: --gpu-type nvidia-h100-80gb: no price" in out
    assert any(ln.startswith("ray up -y") for ln in out.splitlines()), out
    # asked, the question says that no estimate was given
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "up", "cluster.yaml", "--no-doctor",
                             stdin="n\n")
    assert code == 0 and "Start this cluster WITHOUT a cost estimate?" in out, err
    assert "Not started." in out
