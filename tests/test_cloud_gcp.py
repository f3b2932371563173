"""GCP set-up around the generated cluster YAML: the exact gcloud commands `cloud up` runs before
`ray up` (NAT, firewall, worker account), their idempotence against a fake gcloud, the Ray
token's file mode, GPU short names, the default cluster name, and the estimate read back from a
YAML. No network, no cloud credentials."""

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from autolfads.cloud import cluster, gcp, gcp_setup, lifecycle
from autolfads.cloud.cluster import ClusterSpec, build_config
from autolfads.cloud.cost import estimate_shape
from autolfads.cloud.validate import check_config
from autolfads.errors import UserInputError

PROJECT, BUCKET = "my-lab-project", "gs://my-lab-autolfads"
IMAGE = f"us-central1-docker.pkg.dev/{PROJECT}/autolfads/autolfads:0.1.0"
SA = f"autolfads-alice-worker@{PROJECT}.iam.gserviceaccount.com"
P = f"--project {PROJECT}"


@pytest.fixture(autouse=True)
def alice(monkeypatch):
    monkeypatch.setenv("USER", "alice")


def config(**kw) -> dict:
    return build_config(ClusterSpec(project=PROJECT, bucket=BUCKET, **kw).resolved())


SETUP = [
    f"gcloud iam service-accounts create autolfads-alice-worker --display-name 'autolfads "
    f"workers of autolfads-alice' {P}",
    "gcloud compute firewall-rules create autolfads-alice-internal --network default "
    "--direction INGRESS --action ALLOW --rules tcp,udp,icmp --source-tags autolfads-alice "
    f"--target-tags autolfads-alice {P}",
    f"gcloud compute routers create autolfads-router-default --network default --region "
    f"us-central1 {P}",
    "gcloud compute routers nats create autolfads-nat-default --router autolfads-router-default "
    f"--region us-central1 --auto-allocate-nat-external-ips --nat-all-subnet-ip-ranges {P}",
    "gcloud compute networks subnets update default --region us-central1 "
    f"--enable-private-ip-google-access {P}",
    f"gcloud iam service-accounts describe {SA} '--format=value(email)' {P}",
    f"gcloud compute firewall-rules describe autolfads-alice-internal '--format=value(name)' {P}",
    "gcloud compute routers nats describe autolfads-nat-default --router "
    f"autolfads-router-default --region us-central1 '--format=value(name)' {P}",
    f"gcloud storage buckets add-iam-policy-binding {BUCKET} --member serviceAccount:{SA} "
    "--role roles/storage.objectAdmin",
]
# The creates find the thing there on a second `cloud up`; the describes prove it exists.
MAY_FAIL = [True, True, True, True, False, False, False, False, False]


def test_setup_commands_for_the_default_cluster():
    cmds = gcp_setup.setup_commands(config())
    assert [str(c) for c in cmds] == SETUP
    assert [c.may_fail for c in cmds] == MAY_FAIL


def test_setup_commands_for_an_image_grant_the_registry():
    cmds = gcp_setup.setup_commands(config(image=IMAGE))
    assert [str(c) for c in cmds[:len(SETUP)]] == SETUP
    autoscaler = f"ray-autoscaler-sa-v1@{PROJECT}.iam.gserviceaccount.com"
    assert [str(c) for c in cmds[len(SETUP):]] == [
        "gcloud iam service-accounts create ray-autoscaler-sa-v1 --display-name 'Ray Autoscaler "
        f"Service Account (v1)' {P}",
        "gcloud artifacts repositories add-iam-policy-binding autolfads --location us-central1 "
        f"--member serviceAccount:{SA} --role roles/artifactregistry.reader {P}",
        "gcloud artifacts repositories add-iam-policy-binding autolfads --location us-central1 "
        f"--member serviceAccount:{autoscaler} --role roles/artifactregistry.reader {P}",
    ]
    assert [c.may_fail for c in cmds[len(SETUP):]] == [True, False, False]


def test_setup_commands_follow_a_hand_edited_yaml():
    cfg = config(zone="europe-west4-a", cluster_name="lab-gpu")
    for nt in cfg["available_node_types"].values():
        nt["node_config"]["networkInterfaces"][0]["network"] = "projects/p/global/networks/lab"
    cmds = [str(c) for c in gcp_setup.setup_commands(cfg)]
    # A custom network: its own router and NAT, and no guess at its subnets' names.
    assert not any("subnets update" in c for c in cmds)
    assert "--network lab --region europe-west4" in cmds[2]
    assert cmds[3].startswith("gcloud compute routers nats create autolfads-nat-lab --router "
                              "autolfads-router-lab --region europe-west4")
    assert "--source-tags autolfads-lab-gpu --target-tags autolfads-lab-gpu" in cmds[1]
    assert cmds[0].startswith("gcloud iam service-accounts create autolfads-lab-gpu-worker ")


@pytest.mark.parametrize("name,tag,account", [
    ("autolfads-alice", "autolfads-alice", "autolfads-alice-worker"),
    ("http-server", "autolfads-http-server", "autolfads-http-server-worker"),
    ("autolfads-a-very-long-user-nam", "autolfads-a-very-long-user-nam",
     "autolfads-a-very-long-u-worker"),
])
def test_names_fit_gcp_rules(name, tag, account):
    assert gcp_setup.network_tag(name) == tag
    assert gcp_setup.worker_account_id(name) == account
    assert 6 <= len(account) <= 30


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
    """A gcloud that says "already exists" to every create, and fails describes named in FAIL."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    exe = bin_dir / "gcloud"
    exe.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                   'case "$*" in *" create "*) echo "ERROR: already exists" >&2; exit 1;; esac\n'
                   'case "$*" in *"describe $FAIL"*) exit 1;; esac\nexit 0\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAIL", "nothing")
    return lambda: log.read_text().splitlines()


def test_second_up_tolerates_existing_things(fake_gcloud, monkeypatch):
    lifecycle.execute(gcp_setup.setup_commands(config()), echo=lambda _: None)
    assert len(fake_gcloud()) == len(SETUP)  # every command ran, none stopped the set-up
    monkeypatch.setenv("FAIL", "autolfads-nat-default")  # the NAT create failed for real
    with pytest.raises(UserInputError, match="`gcloud compute routers` failed"):
        lifecycle.execute(gcp_setup.setup_commands(config()), echo=lambda _: None)


def test_token_file_is_made_private(tmp_path):
    token = tmp_path / "auth_token"
    assert gcp_setup.check_token_file(token) is None  # none yet: nothing to say
    token.write_text("secret")
    token.chmod(0o644)
    msg = gcp_setup.check_token_file(token)
    assert msg == (f"{token}: was readable by others (mode 644); set it to 600 (the token lets "
                   "anyone who has it run jobs on your cluster)")
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert gcp_setup.check_token_file(token) is None


@pytest.mark.parametrize("short,name", [
    ("t4", "nvidia-tesla-t4"), ("L4", "nvidia-l4"), ("k80", "nvidia-tesla-k80"),
    ("a100", "nvidia-tesla-a100"), ("v100", "nvidia-tesla-v100"), ("p4", "nvidia-tesla-p4"),
    ("p100", "nvidia-tesla-p100"), ("h100", "nvidia-h100-80gb"),
    ("a100-80gb", "nvidia-a100-80gb"), ("nvidia-l4", "nvidia-l4"),
])
def test_gpu_short_names(short, name):
    assert gcp.gpu_name(short) == name


def test_init_takes_short_names_and_the_user(tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.yaml"
    code, stdout, err = run_cli(monkeypatch, capsys, "cloud", "init", "--project", PROJECT,
                                "--bucket", BUCKET, "--gpu-type", "l4", "--out", out)
    assert code == 0, err
    cfg = yaml.safe_load(out.read_text())
    assert cfg["cluster_name"] == "autolfads-alice"
    assert cfg["available_node_types"]["gpu_worker"]["node_config"]["machineType"] == (
        "g2-standard-4")
    assert stdout.splitlines() == [
        f"wrote {out}: cluster autolfads-alice, head n1-standard-4 + up to 8 x g2-standard-4 "
        "with 1 nvidia-l4 (on demand, no external IP), this package's wheel, no image",
        f"next: `autolfads cloud up {out}`"]
    assert ClusterSpec(project=PROJECT, bucket=BUCKET).cluster_name == "autolfads-alice"


def test_estimate_read_back_from_the_yaml():
    cfg = config(zone="europe-west4-a", max_workers=4)
    cfg["idle_timeout_minutes"] = 30
    est = estimate_shape(check_config(cfg, "c.yaml"), 2.0)
    worker_h = 2.0 + (10 + 30) / 60  # boot + run + the YAML's idle timeout
    assert est.get("GPUs") == pytest.approx(4 * 0.35 * worker_h)
    assert est.get("NAT") == pytest.approx(4 * worker_h * 0.0014 + 4 * 3 * 0.045 + 2.5 * 0.005)
    assert any("your region europe-west4 may differ" in n for n in est.notes)
    # An image pulls through Private Google Access: nothing billed per GB at the NAT.
    image = estimate_shape(check_config(config(image=IMAGE, max_workers=4), "c.yaml"), 2.0)
    assert image.get("NAT") == pytest.approx(4 * (2.0 + 20 / 60) * 0.0014 + 2.5 * 0.005)
    assert not any("your region" in n for n in image.notes)
    # The launcher inside the VPC: the head has no external address either.
    inside = estimate_shape(check_config(config(launcher_in_vpc=True), "c.yaml"), 2.0)
    assert inside.get("IPs") == 0


def _system_python_ok() -> bool:
    try:
        return subprocess.run(["/usr/bin/python3", "-c", "import sys, ensurepip; "
                               "sys.exit(sys.version_info < (3, 11))"], timeout=30).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _system_python_ok(), reason="needs /usr/bin/python3 >= 3.11 with venv "
                    "(the host image's), and no sudo apt-get here")
def test_node_python_setup_makes_the_venv_once(tmp_path):
    """The shell line that prepares the venv on the host image, run here with HOME=tmp."""
    env = {**os.environ, "HOME": str(tmp_path)}
    for _ in range(2):  # the second run finds it and does nothing
        subprocess.run(["bash", "-c", cluster.ENSURE_VENV], env=env, check=True, timeout=120)
    assert (Path(tmp_path) / "autolfads-venv" / "bin" / "python").exists()
