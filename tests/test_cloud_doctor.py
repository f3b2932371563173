"""`autolfads cloud doctor`: one line per prerequisite, each problem with the exact command that
fixes it, exit status 2 when anything fails. gcloud's answers are recorded JSON (tests/data/gcloud,
in the formats Google documents) fed through the module's runner: no gcloud, no network."""

import json
import stat
from pathlib import Path

import pytest
from conftest import run_cli
from test_cloud import BUCKET, PROJECT, one_error

from autolfads import __version__
from autolfads.cloud import doctor, doctor_checks, gcp_setup, lifecycle
from autolfads.cloud.cluster import HOST_IMAGE, ClusterSpec, build_config, write_config
from autolfads.cloud.lifecycle import Cmd
from autolfads.errors import UserInputError

REAL_LOCAL_VERSIONS = doctor.local_versions  # before the autouse fixture replaces it
DATA = Path(__file__).parent / "data" / "gcloud"
TAG = "autolfads-ada"  # the default cluster name for USER=ada is its network tag
RULE = "autolfads-ada-internal"  # the firewall rule `cloud up` creates for it
FAMILY = "common-cu129-ubuntu-2404-nvidia-580"  # cluster.HOST_IMAGE
CREATE_RULE = (f"gcloud compute firewall-rules create {RULE} --network default --direction "
               f"INGRESS --action ALLOW --rules tcp,udp,icmp --source-tags {TAG} --target-tags "
               f"{TAG} --project {PROJECT}")
QUOTA_PAGE = f"https://console.cloud.google.com/iam-admin/quotas?project={PROJECT}"
SECRET = "ya29.a0AfB-SECRET-ACCESS-TOKEN"
# gcloud's answer to each command, by its first words: a recorded .json (exit 0), a recorded
# stderr .txt (exit 1), or (exit status, stdout, stderr).
READY = {
    "version": "version.json",
    "auth list": "auth_list.json",
    "auth application-default": (0, SECRET + "\n", ""),
    "projects describe": "project.json",
    "billing projects": "billing_on.json",
    "services list": "services_ready.json",
    "compute regions": "region_ready.json",
    "compute project-info": "project_info_ready.json",
    "compute accelerator-types": "accelerators_ready.json",
    "storage buckets": "bucket.json",
    "storage cp": (0, "", "Copying file://probe to gs://my-lab-autolfads/.autolfads-doctor-probe\n"),
    "storage rm": (0, "", "Removing gs://my-lab-autolfads/.autolfads-doctor-probe...\n"),
    "compute images": "image_ready.json",
    "compute firewall-rules": "firewall_ready.json",
}
FRESH = {**READY, "services list": "services_fresh.json", "compute regions": "region_fresh.json",
         "compute project-info": "project_info_fresh.json",
         "storage buckets": "bucket_not_found.txt", "compute firewall-rules": "firewall_fresh.json"}
P = f"--project {PROJECT}"
COMMANDS = [
    "gcloud version --format=json",
    "gcloud auth list --format=json",
    "gcloud auth application-default print-access-token",
    f"gcloud projects describe {PROJECT} --format=json",
    f"gcloud billing projects describe {PROJECT} --format=json",
    f"gcloud services list --enabled {P} --format=json",
    f"gcloud compute regions describe us-central1 {P} --format=json",
    f"gcloud compute project-info describe {P} --format=json",
    f"gcloud compute accelerator-types list --filter=zone:us-central1-a {P} --format=json",
    f"gcloud storage buckets describe {BUCKET} --format=json",
    f"gcloud storage cp PROBE {BUCKET}/.autolfads-doctor-probe",
    f"gcloud storage rm {BUCKET}/.autolfads-doctor-probe",
    f"gcloud compute images describe-from-family {FAMILY} --project "
    "deeplearning-platform-release --format=json",
    f"gcloud compute firewall-rules list {P} --format=json",
]


class Gcloud:
    """Stands in for `doctor.run_cmd`: answers from the recordings, logs every command."""

    def __init__(self, answers):
        self.answers, self.calls, self.probe_existed = answers, [], None

    def __call__(self, cmd: Cmd):
        assert cmd.argv[0] == "gcloud"
        self.calls.append(cmd)
        words = " ".join(cmd.argv[1:])
        if cmd.argv[1:3] == ("storage", "cp"):
            self.probe_existed = Path(cmd.argv[3]).is_file()
        answer = self.answers[next(k for k in self.answers if words.startswith(k))]
        if isinstance(answer, tuple):
            return answer
        text = (DATA / answer).read_text()
        return (0, text, "") if answer.endswith(".json") else (1, "", text)

    def commands(self):
        return [str(c).replace(str(c.argv[3]), "PROBE") if c.argv[1:3] == ("storage", "cp")
                else str(c) for c in self.calls]


def fake_gcloud(monkeypatch, answers, **changes) -> Gcloud:
    fake = Gcloud({**answers, **{k.replace("_", " "): v for k, v in changes.items()}})
    monkeypatch.setattr(doctor, "run_cmd", fake)
    return fake


def default_config(**changes) -> dict:
    """The config `cloud init --project PROJECT --bucket BUCKET` writes (plus `changes`)."""
    spec = ClusterSpec(project=PROJECT, bucket=BUCKET, **changes)
    return build_config(spec.resolved(Path("cluster.yaml")))


@pytest.fixture
def cluster(tmp_path, monkeypatch) -> Path:
    """The default generated cluster.yaml (8 x T4, us-central1, wheel install), cluster
    autolfads-ada."""
    monkeypatch.chdir(tmp_path)
    return write_config(default_config(), Path("cluster.yaml"))


@pytest.fixture(autouse=True)
def this_machine(monkeypatch):
    """Ray and autolfads here as on the nodes (the versions check reads them); USER=ada, so
    the default cluster name (and its network tag) is autolfads-ada."""
    monkeypatch.setenv("USER", "ada")
    monkeypatch.setattr(doctor, "local_versions",
                        lambda: doctor.Local("2.60.0", "2.60.0", __version__, True))


def test_recordings_match_the_generated_yaml():
    cfg = default_config()
    assert cfg["metadata"]["autolfads"]["network_tag"] == TAG
    assert gcp_setup.firewall_rule(TAG) == RULE
    assert HOST_IMAGE.endswith(f"/family/{FAMILY}")
    assert CREATE_RULE in [str(c) for c in gcp_setup.setup_commands(cfg)]
    assert doctor_checks.facts(cfg, "cluster.yaml").rule == CREATE_RULE


def lines(out: str, tag: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(tag)]


def test_ready_project_passes(cluster, monkeypatch, capsys):
    fake = fake_gcloud(monkeypatch, READY)
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    assert code == 0, err
    assert fake.commands() == COMMANDS
    assert [c.hide_stdout for c in fake.calls] == [c.startswith("gcloud auth application")
                                                   for c in COMMANDS]
    assert fake.probe_existed  # the write test uploads a real file
    *checks, last = out.splitlines()
    assert last == "cloud doctor: ready"
    assert all(ln.startswith("ok   ") for ln in checks), out
    for expected in [
        "ok   gcloud 467.0.0 installed",
        "ok   gcloud: logged in as ada@example.org",
        f"ok   project {PROJECT} (123456789012) is active",
        "ok   billing: on (billingAccounts/012345-567890-ABCDEF)",
        "ok   APIs enabled: compute.googleapis.com, iam.googleapis.com, storage.googleapis.com, "
        "cloudresourcemanager.googleapis.com",
        "ok   quota NVIDIA_T4_GPUS in us-central1: 8 free, the cluster needs 8",
        "ok   quota GPUS_ALL_REGIONS: 8 free, the cluster needs 8",
        "ok   quota CPUS in us-central1: 72 free, the cluster needs 36",  # 4 + 8 x 4 vCPUs
        f"ok   bucket {BUCKET}: exists (US-CENTRAL1)",
        f"ok   bucket {BUCKET}: writable",
        f"ok   host image family {FAMILY}: {FAMILY}-v20250916 is READY",
        "ok   firewall: no rule opens Ray's ports (6379, 8265, 10001) to the internet",
        f"ok   firewall: {RULE} admits traffic between nodes tagged {TAG}",
        f"ok   versions: ray 2.60.0, autolfads {__version__}, as on the nodes",
    ]:
        assert expected in checks, out
    assert SECRET not in out + err  # the access token is a secret


def test_fresh_project_names_every_problem_with_its_fix(cluster, monkeypatch, capsys):
    fake = fake_gcloud(monkeypatch, FRESH)
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor", "cluster.yaml")
    one_error(code, err, ["cloud doctor: 4 problems; fix them and run it again"])
    assert lines(out, "FAIL") == [
        "FAIL iam.googleapis.com, cloudresourcemanager.googleapis.com not enabled -> gcloud "
        f"services enable iam.googleapis.com cloudresourcemanager.googleapis.com --project "
        f"{PROJECT}",
        "FAIL quota NVIDIA_T4_GPUS in us-central1: 0 (0 in use), the cluster needs 8 -> ask for "
        f"8 NVIDIA_T4_GPUS in us-central1 at {QUOTA_PAGE}",
        "FAIL quota GPUS_ALL_REGIONS: 0 (0 in use), the cluster needs 8 -> ask for 8 "
        f"GPUS_ALL_REGIONS at {QUOTA_PAGE}",
        f"FAIL bucket {BUCKET}: not found -> gcloud storage buckets create {BUCKET} --location "
        f"us-central1 --project {PROJECT} --uniform-bucket-level-access",
    ]
    # `cloud up` creates the rule between the nodes: a warning with the very same command.
    assert lines(out, "warn") == [
        "warn quota CPUS in us-central1: 24 (0 in use), the cluster needs 36 -> ask for 36 CPUS "
        f"in us-central1 at {QUOTA_PAGE}",
        f"warn firewall: no rule admits traffic between the nodes (tag {TAG}); will be created "
        f"by `cloud up` -> {CREATE_RULE}"]
    # The default network's rules open ssh/rdp/icmp to the internet, not Ray's ports.
    assert "ok   firewall: no rule opens Ray's ports (6379, 8265, 10001) to the internet" in out
    # A missing bucket is not written to.
    assert not any(c.argv[1:3] == ("storage", "cp") for c in fake.calls)


def test_new_project_without_compute_or_billing(cluster, monkeypatch, capsys):
    disabled = "compute_disabled.txt"
    fake_gcloud(monkeypatch, READY, billing_projects="billing_off.json",
                services_list="services_new.json", compute_regions=disabled,
                compute_images=disabled, **{"compute firewall-rules": disabled})
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    one_error(code, err, ["cloud doctor: 2 problems"])
    assert lines(out, "FAIL") == [
        f"FAIL billing: off for project {PROJECT} -> gcloud billing accounts list (pick an "
        f"ACCOUNT_ID), then gcloud billing projects link {PROJECT} "
        "--billing-account=ACCOUNT_ID",
        "FAIL compute.googleapis.com, iam.googleapis.com, cloudresourcemanager.googleapis.com "
        "not enabled -> gcloud services enable compute.googleapis.com iam.googleapis.com "
        f"cloudresourcemanager.googleapis.com --project {PROJECT}",
    ]
    # What needs Compute Engine is skipped (one line each), not reported again as failures.
    assert lines(out, "skip") == [
        "skip quotas: needs compute.googleapis.com (see above)",
        f"skip host image family {FAMILY}: needs compute.googleapis.com (see above)",
        "skip firewall rules: needs compute.googleapis.com (see above)",
    ]


def test_gcloud_missing_is_the_one_finding(cluster, monkeypatch, capsys):
    monkeypatch.setattr(lifecycle, "_executable", lambda name: None)  # the real runner, no gcloud
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    one_error(code, err, ["cloud doctor: 1 problem;"])
    assert out.splitlines() == [
        f"FAIL gcloud: not installed -> {lifecycle.INSTALL_HINTS['gcloud']}",
        "skip the other checks: fix the line above first"]
    assert "https://cloud.google.com/sdk/docs/install" in out


def test_real_runner_reports_missing_gcloud_and_hides_secrets(monkeypatch, tmp_path):
    monkeypatch.setattr(lifecycle, "_executable", lambda name: None)
    rc, _, err = doctor.run_cmd(Cmd(("gcloud", "version", "--format=json")))
    assert rc == 127 and "cloud.google.com/sdk" in err
    exe = tmp_path / "gcloud"  # a stand-in that prints a token and fails on a second command
    exe.write_text('#!/bin/sh\n[ "$1" = fail ] && { echo "ERROR: no" >&2; exit 3; }\n'
                   f'echo {SECRET}\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(lifecycle, "_executable", lambda name: str(exe))
    assert doctor.run_cmd(Cmd(("gcloud", "token"), hide_stdout=True)) == (0, "", "")
    assert doctor.run_cmd(Cmd(("gcloud", "token"))) == (0, SECRET + "\n", "")
    assert doctor.run_cmd(Cmd(("gcloud", "fail"))) == (3, "", "ERROR: no\n")


@pytest.mark.parametrize("answers,first", [
    ({"auth list": "auth_list_none.json"}, "FAIL gcloud: not logged in -> gcloud auth login"),
    ({"projects describe": "project_denied.txt"},
     f"FAIL project {PROJECT}: not found, or your account has no access -> check the id "
     f"(gcloud projects list), or create it: gcloud projects create {PROJECT}"),
])
def test_no_login_or_no_project_stops_early(cluster, monkeypatch, capsys, answers, first):
    fake_gcloud(monkeypatch, READY, **answers)
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    one_error(code, err, ["1 problem"])
    assert lines(out, "FAIL") == [first]
    assert out.splitlines()[-1] == "skip the other checks: fix the line above first"
    assert "billing" not in out


def test_missing_application_default_credentials(cluster, monkeypatch, capsys):
    fake_gcloud(monkeypatch, READY, **{"auth application-default": "adc_missing.txt"})
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    one_error(code, err, ["1 problem"])
    assert lines(out, "FAIL") == [
        "FAIL no application-default credentials (Ray's launcher needs them) -> gcloud auth "
        "application-default login"]
    assert "ok   bucket" in out  # not a gate: the other checks still ran


@pytest.mark.parametrize("recording,code,line", [
    ("image_deprecated.json", 0,
     f"warn host image family {FAMILY}: {FAMILY}-v20250801 is "
     "DEPRECATED -> gcloud compute images list --project deeplearning-platform-release "
     '--no-standard-images --filter="family~common-cu"; then `autolfads cloud init ... --force '
     "--host-image projects/deeplearning-platform-release/global/images/family/FAMILY` (or edit "
     "sourceImage)"),
    ("image_obsolete.json", 2,
     f"FAIL host image family {FAMILY}: {FAMILY}-v20250801 is OBSOLETE -> gcloud compute images "
     "list"),
    ("image_not_found.txt", 2, f"FAIL host image family {FAMILY}: not found in project "
                               "deeplearning-platform-release -> gcloud compute images list"),
])
def test_retired_image_family_is_named(cluster, monkeypatch, capsys, recording, code, line):
    fake_gcloud(monkeypatch, READY, compute_images=recording)
    status, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    assert status == code, err
    [found] = [ln for ln in out.splitlines() if "host image" in ln]
    assert found.startswith(line), found
    if code == 0:
        assert out.splitlines()[-1] == "cloud doctor: ready (1 warning)"


def test_rule_open_to_the_internet_on_ray_ports_is_named(cluster, monkeypatch, capsys):
    fake_gcloud(monkeypatch, READY, **{"compute firewall-rules": "firewall_open.json"})
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    one_error(code, err, ["1 problem"])
    assert lines(out, "FAIL") == [
        "FAIL firewall rule ray-dashboard admits the whole internet to Ray's tcp 6379, 8265, "
        f"10001 -> gcloud compute firewall-rules delete ray-dashboard --project {PROJECT} (or "
        "narrow its source ranges)"]
    # `jupyter` (8000-9000 from anywhere) only reaches VMs tagged `notebook`: not ours.
    assert "jupyter" not in out and "web" not in out


def test_bucket_elsewhere_or_read_only(cluster, monkeypatch, capsys):
    fake_gcloud(monkeypatch, READY, storage_buckets="bucket_eu.json")
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    assert code == 0, err
    assert lines(out, "warn") == [
        f"warn bucket {BUCKET}: in EUROPE-WEST4, the cluster in us-central1 (slower, and traffic "
        f"between regions is billed) -> a bucket in us-central1: gcloud storage buckets create "
        f"{BUCKET} --location us-central1 --project {PROJECT} --uniform-bucket-level-access"]
    fake = fake_gcloud(monkeypatch, READY, storage_cp="write_denied.txt")
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    one_error(code, err, ["1 problem"])
    assert lines(out, "FAIL") == [
        f"FAIL bucket {BUCKET}: cannot write to it (HTTPError 403: ada@example.org does not have "
        "storage.objects.create access to the Google Cloud Storage object. Permission "
        "'storage.objects.create' denied on resource (or it may not exist).) -> gcloud storage "
        f"buckets add-iam-policy-binding {BUCKET} --member=user:YOUR_EMAIL "
        "--role=roles/storage.objectAdmin"]
    assert not any(c.argv[1:3] == ("storage", "rm") for c in fake.calls)


def test_versions_mismatch(cluster, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "local_versions",
                        lambda: doctor.Local("2.9.3", "2.60.0", "0.2.0", False))
    fake_gcloud(monkeypatch, READY)
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor")
    one_error(code, err, ["2 problems"])
    assert lines(out, "FAIL") == [
        "FAIL ray 2.9.3 here; the cluster runs ray 2.60.0 -> pip install 'ray[default]==2.60.0'",
        "FAIL google-api-python-client not installed (Ray's GCP launcher needs it) -> pip "
        "install google-api-python-client"]
    # The nodes install this checkout's wheel: the YAML is what is old (or new).
    assert lines(out, "warn") == [
        f"warn autolfads 0.2.0 here; the YAML was written by {__version__} -> write it again "
        "with `autolfads cloud init ... --force` (`cloud up` installs this checkout's 0.2.0 on "
        "the nodes)"]


def test_local_versions_reads_the_pin():
    here = REAL_LOCAL_VERSIONS()
    assert here.ray_pin == "2.60.0" and here.autolfads == __version__


def test_dry_run_prints_the_commands(cluster, monkeypatch, capsys):
    fake = fake_gcloud(monkeypatch, {})
    code, out, err = run_cli(monkeypatch, capsys, "cloud", "doctor", "--dry-run")
    assert code == 0, err
    printed = [ln.replace(ln.split()[3], "PROBE") if ln.startswith("gcloud storage cp") else ln
               for ln in out.splitlines()]
    assert printed == COMMANDS and fake.calls == []


def test_run_doctor_api(cluster):
    printed = []
    found = doctor.run_doctor(cluster, echo=printed.append, run=Gcloud(READY))
    assert all(x.ok for x in found) and printed[-1] == "cloud doctor: ready"
    printed.clear()
    with pytest.raises(UserInputError, match=r"^cloud doctor: 4 problems; fix them"):
        doctor.run_doctor(cluster, echo=printed.append, run=Gcloud(FRESH))
    assert len([p for p in printed if p.startswith("FAIL")]) == 4


def test_a_zone_without_the_gpu_type_fails_with_where_to_find_one(cluster, monkeypatch, capsys):
    only_l4 = json.loads((DATA / "accelerators_ready.json").read_text())[1:]
    fake_gcloud(monkeypatch, READY, **{"compute accelerator-types": (0, json.dumps(only_l4), "")})
    code, out, _ = run_cli(monkeypatch, capsys, "cloud", "doctor")
    assert code != 0
    assert (f"FAIL GPU nvidia-tesla-t4: not offered in zone us-central1-a (there: nvidia-l4) -> "
            f"zones that offer it: gcloud compute accelerator-types list "
            f"--filter=name=nvidia-tesla-t4 --project {PROJECT}") in out
