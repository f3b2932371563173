"""`autolfads cloud doctor`, continued: the single checks (quota, APIs, firewall rules, image and
versions), the API entry point, and a lab's own servers."""

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from test_cloud import BUCKET, PROJECT, one_error
from test_cloud_doctor import (  # noqa: F401  (this_machine: the autouse fixture)
    CREATE_RULE,
    DATA,
    FRESH,
    QUOTA_PAGE,
    READY,
    RULE,
    TAG,
    Gcloud,
    default_config,
    fake_gcloud,
    this_machine,
)

from autolfads import __version__
from autolfads.cloud import doctor, doctor_checks, gcp_setup


def test_spot_draws_on_preemptible_quota():
    f = doctor_checks.facts(default_config(spot=True, max_workers=4), "c.yaml")

    def region(t4, spot_t4):
        quotas = [{"metric": "NVIDIA_T4_GPUS", "limit": t4, "usage": 0},
                  {"metric": "PREEMPTIBLE_NVIDIA_T4_GPUS", "limit": spot_t4, "usage": 1}]
        return 0, json.dumps({"quotas": quotas}), ""

    project = (0, '{"quotas": [{"metric": "GPUS_ALL_REGIONS", "limit": 4, "usage": 0}]}', "")
    [gpu, _] = doctor_checks.parse_quota(f, [region(0, 5), project])
    assert gpu.line() == ("ok   quota PREEMPTIBLE_NVIDIA_T4_GPUS in us-central1: 4 free, the "
                          "cluster needs 4")
    # No spot quota: the standard one counts.
    [gpu, _] = doctor_checks.parse_quota(f, [region(2, 0), project])
    assert gpu.line() == (
        "FAIL quota NVIDIA_T4_GPUS in us-central1: 2 (0 in use), the cluster needs 4 -> ask for 4 "
        f"PREEMPTIBLE_NVIDIA_T4_GPUS (spot) in us-central1 at {QUOTA_PAGE}")


def recorded(name: str) -> list[tuple[int, str, str]]:
    return [(0, (DATA / name).read_text(), "")]


def test_registry_api_only_for_an_artifact_registry_image():
    f = doctor_checks.facts(default_config(), "c.yaml")  # the wheel: no image at all
    assert (f.image, f.wheel, f.registry, f.tag, f.network) == (None, True, False, TAG, "default")
    f = doctor_checks.facts(default_config(image="docker.io/lab/autolfads:1"), "c.yaml")
    assert (f.wheel, f.registry) == (False, False)
    assert [x.line() for x in doctor_checks.parse_apis(f, recorded("services_fresh.json"))] == [
        "FAIL iam.googleapis.com, cloudresourcemanager.googleapis.com not enabled -> gcloud "
        f"services enable iam.googleapis.com cloudresourcemanager.googleapis.com --project "
        f"{PROJECT}"]
    image = f"us-central1-docker.pkg.dev/{PROJECT}/autolfads/autolfads:{__version__}"
    f = doctor_checks.facts(default_config(image=image), "c.yaml")
    assert f.registry
    assert [x.line() for x in doctor_checks.parse_apis(f, recorded("services_ready.json"))] == [
        "FAIL artifactregistry.googleapis.com not enabled -> gcloud services enable "
        f"artifactregistry.googleapis.com --project {PROJECT}"]


def test_firewall_rule_on_the_yamls_network_and_tag():
    cfg = default_config()
    for nt in cfg["available_node_types"].values():
        nt["node_config"]["networkInterfaces"][0]["network"] = "projects/p/global/networks/lab"
    f = doctor_checks.facts(cfg, "c.yaml")
    assert (f.tag, f.network) == (TAG, "lab")
    # No rule for the tag: `cloud up` creates it, on `lab`.
    [_, rule] = doctor_checks.parse_firewall(f, recorded("firewall_fresh.json"))
    assert rule.severity == "warning" and not rule.is_error
    assert rule.fix == CREATE_RULE.replace("--network default", "--network lab")
    assert rule.fix in [str(c) for c in gcp_setup.setup_commands(cfg)]
    # The recorded rule of that name is on `default`: `cloud up` cannot create it on `lab`.
    [_, rule] = doctor_checks.parse_firewall(f, recorded("firewall_ready.json"))
    assert rule.line() == (
        f"FAIL firewall rule {RULE}: does not admit tcp between nodes tagged {TAG} on network "
        f"lab -> gcloud compute firewall-rules delete {RULE} --project {PROJECT} (`cloud up` "
        "creates it again)")


def test_firewall_rule_of_that_name_that_admits_nothing_is_an_error():
    f = doctor_checks.facts(default_config(), "c.yaml")
    rules = json.loads((DATA / "firewall_ready.json").read_text())
    rules[0]["sourceTags"] = ["http-server"]  # cloud up's create fails on the name, keeps it
    [_, rule] = doctor_checks.parse_firewall(f, [(0, json.dumps(rules), "")])
    assert rule.line() == (
        f"FAIL firewall rule {RULE}: does not admit tcp between nodes tagged {TAG} on network "
        f"default -> gcloud compute firewall-rules delete {RULE} --project {PROJECT} (`cloud up` "
        "creates it again)")


@pytest.mark.parametrize("allowed,targets,what", [
    ([{"IPProtocol": "tcp"}], [TAG], "every tcp port"),
    ([{"IPProtocol": "all"}], [], "every tcp port"),
    ([{"IPProtocol": "tcp", "ports": ["8000-9000"]}], [TAG], "Ray's tcp 8265"),
    ([{"IPProtocol": "tcp", "ports": ["6379"]}], ["notebook"], None),  # not our nodes
    ([{"IPProtocol": "udp"}], [TAG], None),
])
def test_rule_open_to_the_internet(allowed, targets, what):
    f = doctor_checks.facts(default_config(), "c.yaml")
    rules = json.loads((DATA / "firewall_ready.json").read_text())
    rules.append({"name": "wide", "network": rules[0]["network"], "allowed": allowed,
                  "sourceRanges": ["0.0.0.0/0"], "targetTags": targets})
    [exposed, _] = doctor_checks.parse_firewall(f, [(0, json.dumps(rules), "")])
    if what is None:
        assert exposed.line() == ("ok   firewall: no rule opens Ray's ports (6379, 8265, 10001) "
                                  "to the internet")
    else:
        assert exposed.line() == (
            f"FAIL firewall rule wide admits the whole internet to {what} -> gcloud compute "
            f"firewall-rules delete wide --project {PROJECT} (or narrow its source ranges)")


def test_versions_of_an_image_or_without_a_checkout():
    f = doctor_checks.facts(default_config(image="docker.io/lab/autolfads:1"), "c.yaml")
    assert [x.line() for x in doctor.parse_versions(
        f, doctor.Local("2.60.0", "2.60.0", "0.2.0", True))] == [
        f"warn autolfads 0.2.0 here; the YAML's nodes run {__version__} -> pip install "
        f"autolfads=={__version__}, or install 0.2.0 on the nodes (push its image) and write the "
        "YAML again with `autolfads cloud init ... --force`"]
    no_checkout = doctor.Local("2.60.0", "2.60.0", __version__, True, checkout=False)
    assert doctor.parse_versions(f, no_checkout)[0].ok  # an image needs no wheel
    f = doctor_checks.facts(default_config(), "c.yaml")
    assert [x.line() for x in doctor.parse_versions(f, no_checkout)] == [
        "FAIL the nodes install autolfads from a wheel of this source checkout, and this "
        "installation has none -> pip install -e PATH_TO_A_CHECKOUT here, or write the YAML "
        "again with `autolfads cloud init ... --image IMAGE --force`"]
    cfg = default_config()
    meta = cfg["metadata"]["autolfads"]
    meta["storage"] = meta.pop("bucket") + "/"  # the lifecycle's newer key
    assert doctor_checks.facts(cfg, "c.yaml").bucket == BUCKET


def test_unreadable_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_error(*run_cli(monkeypatch, capsys, "cloud", "doctor")[::2], ["cluster.yaml",
                                                                      "not found"])


@pytest.fixture
def lab_cluster(tmp_path, monkeypatch) -> Path:
    """A local (on-premise) cluster YAML in Ray's shape."""
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "id_lab"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o644)
    cfg = {"cluster_name": "lab", "provider": {"type": "local", "head_ip": "10.0.0.1",
                                               "worker_ips": ["10.0.0.2"]},
           "auth": {"ssh_user": "ada", "ssh_private_key": str(key)},
           "metadata": {"autolfads": {"version": __version__}}}
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_local_cluster_checks_this_machine_only(lab_cluster, monkeypatch, capsys):
    fake = fake_gcloud(monkeypatch, {})
    key = str(lab_cluster.parent / "id_lab")
    monkeypatch.setattr(doctor.shutil, "which", lambda exe: None if exe == "rsync" else "/bin/x")
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor", lab_cluster)
    one_error(code, err, ["2 problems"])
    assert out.splitlines() == [
        "ok   ssh: installed",
        "FAIL rsync: not installed here -> sudo apt-get install rsync (or your system's package)",
        f"FAIL ssh key {key}: readable by others (ssh refuses it) -> chmod 600 {key}",
        f"ok   versions: ray 2.60.0, autolfads {__version__}, as on the nodes"]
    assert fake.calls == []
    os.chmod(key, 0o600)
    monkeypatch.setattr(doctor.shutil, "which", lambda exe: "/usr/bin/" + exe)
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor", lab_cluster)
    assert code == 0, err
    assert f"ok   ssh key {key}: private" in out and out.splitlines()[-1] == "cloud doctor: ready"
