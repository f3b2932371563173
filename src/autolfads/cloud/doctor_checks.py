"""What `autolfads cloud doctor` concludes, from the cluster YAML and gcloud's answers (pure).

`facts` reads what the checks need from the YAML; each `parse_*` turns the results of its gcloud
commands (exit status, stdout, stderr) into `Finding`s. `answer` is the one place a failed
command becomes a finding (an API that is off, NOT_FOUND, PERMISSION_DENIED, anything else);
doctor.py runs the commands.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from autolfads.cloud import gcp, gcp_setup, lifecycle
from autolfads.cloud.failures import fix_for
from autolfads.cloud.validate import Shape, _get, check_config

Result = tuple[int, str, str]  # exit status, stdout, stderr
Quotas = dict[str, tuple[float, float]]  # metric -> (limit, usage)
Parser = Callable[..., list["Finding"]]

RAY_PORTS = (6379, 8265, 10001)  # GCS, dashboard and job server, client
# Ray's GCP launcher calls cloudresourcemanager (and iam, for its service account); `cloud up`
# creates the workers' service account (iam) and a Cloud NAT (compute).
APIS = ("compute.googleapis.com", "iam.googleapis.com", "storage.googleapis.com",
        "cloudresourcemanager.googleapis.com")
REGISTRY_API = "artifactregistry.googleapis.com"  # only for a docker.image there
PROBE = ".autolfads-doctor-probe"
GPU_QUOTAS = {"nvidia-tesla-t4": "NVIDIA_T4_GPUS", "nvidia-tesla-p4": "NVIDIA_P4_GPUS",
              "nvidia-tesla-p100": "NVIDIA_P100_GPUS", "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
              "nvidia-tesla-k80": "NVIDIA_K80_GPUS", "nvidia-l4": "NVIDIA_L4_GPUS",
              "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
              "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS", "nvidia-h100-80gb": "NVIDIA_H100_GPUS"}
MULTI_REGIONS = {"us": "us-", "eu": "europe-", "asia": "asia-"}
IMAGE_RE = re.compile(r"projects/(?P<project>[^/]+)/global/images/"
                      r"(?P<fam>family/)?(?P<name>[^/]+)$")
LIST_IMAGES = ("gcloud compute images list --project deeplearning-platform-release "
               '--no-standard-images --filter="family~common-cu"')
API_RE = re.compile(r"([a-z0-9-]+\.googleapis\.com)")
DISABLED_RE = re.compile(r"SERVICE_DISABLED|has not been used in project|is disabled|not enabled")
NOT_FOUND_RE = re.compile(r"\b404\b|NOT_FOUND|not found", re.I)
DENIED_RE = re.compile(r"\b403\b|PERMISSION_DENIED|does not have|permission", re.I)


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str | None = None
    severity: Literal["error", "warning", "skip"] = "error"

    @property
    def is_error(self) -> bool:
        return not self.ok and self.severity == "error"

    def line(self) -> str:
        if self.ok:
            return f"ok   {self.what}"
        tag = {"error": "FAIL", "warning": "warn", "skip": "skip"}[self.severity]
        return f"{tag} {self.what}" + (f" -> {self.fix}" if self.fix else "")


def ok(what: str) -> Finding:
    return Finding(True, what)


def fail(what: str, fix: str | None = None) -> Finding:
    return Finding(False, what, fix)


def warn(what: str, fix: str | None = None) -> Finding:
    return Finding(False, what, fix, "warning")


def skip(what: str) -> Finding:
    return Finding(False, what, None, "skip")


@dataclass(frozen=True)
class Facts:
    """What doctor reads from the cluster YAML."""

    provider: str
    project: str = ""
    region: str = ""
    shape: Shape | None = None
    bucket: str | None = None  # where the runs go, when it is a gs:// bucket
    images: tuple[str, ...] = ()  # the nodes' boot images (sourceImage)
    network: str = "default"
    tag: str = ""  # the nodes' network tag (metadata.autolfads.network_tag)
    rule: str = ""  # the command `cloud up` creates the tag's firewall rule with
    image: str | None = None  # docker.image; None: the nodes install a wheel
    wheel: bool = False  # `cloud up` builds this checkout's wheel for the nodes
    version: str | None = None  # metadata.autolfads.version: who wrote the YAML
    ssh_key: str | None = None  # provider local

    @property
    def registry(self) -> bool:
        """The nodes pull their image from Artifact Registry."""
        return (self.image or "").split("/", 1)[0].endswith("-docker.pkg.dev")

    @property
    def apis(self) -> tuple[str, ...]:
        return (*APIS, REGISTRY_API) if self.registry else APIS


def facts(cfg: dict[str, Any], src: str) -> Facts:
    meta = _get(cfg, "metadata.autolfads") or {}
    wheel, version = bool(meta.get("wheel_dir")), meta.get("version")
    if _get(cfg, "provider.type") == "local":
        return Facts("local", wheel=wheel, version=version,
                     ssh_key=_get(cfg, "auth.ssh_private_key"))
    shape = check_config(cfg, src)  # UserInputError on the first problem (`cloud validate`)
    assert shape is not None
    images = [((nt["node_config"].get("disks") or [{}])[0].get("initializeParams") or {}
               ).get("sourceImage") for nt in cfg["available_node_types"].values()]
    # Exactly the rule `cloud up` creates, on the network it creates it on.
    rule = next(c for c in gcp_setup.setup_commands(cfg)
                if c.argv[1:4] == ("compute", "firewall-rules", "create"))
    bucket = shape.bucket if (shape.bucket or "").startswith("gs://") else None
    return Facts("gcp", project=cfg["provider"]["project_id"], region=cfg["provider"]["region"],
                 shape=shape, bucket=bucket, images=tuple(dict.fromkeys(i for i in images if i)),
                 network=rule.argv[rule.argv.index("--network") + 1],
                 tag=str(meta["network_tag"]), rule=str(rule), image=_get(cfg, "docker.image"),
                 wheel=wheel, version=version)


class Found(Exception):
    """A failed command: the one finding its check reports."""

    def __init__(self, finding: Finding):
        super().__init__(finding.what)
        self.finding = finding


def check(parse: Parser) -> Parser:
    """A parser that may stop at a failed command (`answer` raises Found): its one finding."""
    @functools.wraps(parse)
    def parsed(*args: Any) -> list[Finding]:
        try:
            return parse(*args)
        except Found as e:
            return [e.finding]
    return parsed


def _message(err: str) -> str:
    """gcloud's error on one line, without its `ERROR: (gcloud.group.command)` prefix."""
    return " ".join(re.sub(r"ERROR: \([\w.-]+\)", "", err).split())[:240]


def _loads(text: str) -> Any:
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError:
        return None


def answer(f: Facts, res: Result, what: str, fix: str | None = None, *,
           missing: Finding | None = None, denied: Finding | None = None) -> Any:
    """gcloud's JSON answer (None if it is not JSON). A failed command raises Found: a skip when
    the API it needs is off (the APIs line says so), `missing` (NOT_FOUND), `denied`
    (PERMISSION_DENIED), else gcloud's message on one line with `fix`."""
    rc, out, err = res
    if rc == 0:
        return _loads(out)
    api = API_RE.search(err)
    if api and DISABLED_RE.search(err):
        if api[1] in f.apis:
            raise Found(skip(f"{what}: needs {api[1]} (see above)"))
        raise Found(warn(f"{what}: not checked, {api[1]} is off",
                         f"gcloud services enable {api[1]} --project {f.project}"))
    if missing and NOT_FOUND_RE.search(err):
        raise Found(missing)
    if denied and DENIED_RE.search(err):
        raise Found(denied)
    # gcloud's message may name a cause with a known fix (an expired login, a quota) that is
    # not this check's usual one.
    raise Found(fail(f"{what}: {_message(err) or f'exit status {rc}'}", fix_for(err) or fix))


def parse_gcloud(results: list[Result]) -> list[Finding]:
    if results[0][0] != 0:
        return [fail("gcloud: not installed", lifecycle.INSTALL_HINTS["gcloud"])]
    return [ok(f"gcloud {(_loads(results[0][1]) or {}).get('Google Cloud SDK', '')} installed")]


def parse_login(results: list[Result]) -> list[Finding]:
    active = [a.get("account") for a in _loads(results[0][1]) or []
              if a.get("status") == "ACTIVE"]
    if results[0][0] != 0 or not active:
        return [fail("gcloud: not logged in", "gcloud auth login")]
    return [ok(f"gcloud: logged in as {active[0]}")]


def parse_adc(results: list[Result]) -> list[Finding]:
    if results[0][0] == 0:  # its stdout is a token: never read, never shown
        return [ok("application-default credentials (used by Ray's launcher) work")]
    return [fail("no application-default credentials (Ray's launcher needs them)",
                 "gcloud auth application-default login")]


@check
def parse_project(f: Facts, results: list[Result]) -> list[Finding]:
    fix = f"check the id (gcloud projects list), or create it: gcloud projects create {f.project}"
    gone = fail(f"project {f.project}: not found, or your account has no access", fix)
    p = answer(f, results[0], f"project {f.project}", fix, missing=gone, denied=gone) or {}
    if p.get("lifecycleState") != "ACTIVE":
        return [fail(f"project {f.project}: {p.get('lifecycleState')}",
                     f"gcloud projects undelete {f.project}")]
    return [ok(f"project {f.project} ({p.get('projectNumber')}) is active")]


@check
def parse_billing(f: Facts, results: list[Result]) -> list[Finding]:
    fix = (f"gcloud billing accounts list (pick an ACCOUNT_ID), then gcloud billing projects link "
           f"{f.project} --billing-account=ACCOUNT_ID")
    b = answer(f, results[0], "billing", fix) or {}
    if not b.get("billingEnabled"):  # the API leaves false booleans out
        return [fail(f"billing: off for project {f.project}", fix)]
    return [ok(f"billing: on ({b.get('billingAccountName')})")]


@check
def parse_apis(f: Facts, results: list[Result]) -> list[Finding]:
    on = {(s.get("config") or {}).get("name") or str(s.get("name", "")).rsplit("/", 1)[-1]
          for s in answer(f, results[0], "enabled APIs") or []}
    if missing := [a for a in f.apis if a not in on]:
        return [fail(f"{', '.join(missing)} not enabled",
                     f"gcloud services enable {' '.join(missing)} --project {f.project}")]
    return [ok(f"APIs enabled: {', '.join(f.apis)}")]


def _pick(quotas: Quotas, metric: str, spot: bool) -> str:
    # Spot VMs draw on the PREEMPTIBLE_ quota when the project has some, else on the standard one.
    pre = f"PREEMPTIBLE_{metric}"
    return pre if spot and quotas.get(pre, (0.0, 0.0))[0] > 0 else metric


def _quota(f: Facts, quotas: Quotas, metric: str, need: int, where: str, severity: Literal[
        "error", "warning"] = "error", ask: str | None = None) -> Finding:
    page = f"https://console.cloud.google.com/iam-admin/quotas?project={f.project}"
    if metric not in quotas:
        return warn(f"quota {metric}{where}: not listed", f"look it up at {page}")
    limit, usage = quotas[metric]
    if limit - usage >= need:
        return ok(f"quota {metric}{where}: {limit - usage:g} free, the cluster needs {need}")
    return Finding(False, f"quota {metric}{where}: {limit:g} ({usage:g} in use), the cluster "
                   f"needs {need}", f"ask for {usage + need:g} {ask or metric}{where} at {page}",
                   severity)


@check
def parse_quota(f: Facts, results: list[Result]) -> list[Finding]:
    region, project = ({q["metric"]: (float(q.get("limit", 0)), float(q.get("usage", 0)))
                        for q in (answer(f, r, "quotas") or {}).get("quotas") or []
                        if "metric" in q} for r in results)
    s, where = f.shape, f" in {f.region}"
    assert s is not None
    gpus = s.max_workers * s.gpus_per_worker
    metric = GPU_QUOTAS.get(s.gpu_type, s.gpu_type.upper().replace("-", "_") + "_GPUS")
    ask = f"PREEMPTIBLE_{metric} (spot)" if s.spot else None
    out = [_quota(f, region, _pick(region, metric, s.spot), gpus, where, ask=ask),
           _quota(f, project, "GPUS_ALL_REGIONS", gpus, "")]  # 0 in every new project
    cpus: dict[str, int] = {}
    for machine, n, spot in ((s.head_machine, 1, False), (s.worker_machine, s.max_workers, s.spot)):
        family = machine.split("-", 1)[0]
        m = _pick(region, "CPUS" if family == "n1" else f"{family.upper()}_CPUS", spot)
        cpus[m] = cpus.get(m, 0) + n * gcp.vcpus(machine)
    # A warning: too few CPUs starts fewer workers, not none. Only metrics the region lists.
    return out + [_quota(f, region, m, n, where, "warning") for m, n in cpus.items()
                  if m in region]


@check
def parse_accelerators(f: Facts, results: list[Result]) -> list[Finding]:
    """The workers' GPU type is offered in the YAML's zone (not every zone has every GPU)."""
    s = f.shape
    assert s is not None
    offered = sorted({str(a.get("name")) for a in answer(f, results[0], "GPU types") or []})
    if s.gpu_type in offered:
        return [ok(f"GPU {s.gpu_type} offered in {s.zone}")]
    return [fail(f"GPU {s.gpu_type}: not offered in zone {s.zone} (there: "
                 f"{', '.join(offered) or 'none'})",
                 f"zones that offer it: gcloud compute accelerator-types list "
                 f"--filter=name={s.gpu_type} --project {f.project}; then autolfads cloud init "
                 "--zone ZONE ... --force")]


@check
def parse_bucket(f: Facts, bucket: str, results: list[Result]) -> list[Finding]:
    create = (f"gcloud storage buckets create {bucket} --location {f.region} --project "
              f"{f.project} --uniform-bucket-level-access")
    b = answer(f, results[0], f"bucket {bucket}", create,
               missing=fail(f"bucket {bucket}: not found", create),
               denied=fail(f"bucket {bucket}: your account has no access (bucket names are "
                           "global: it may be someone else's)",
                           f"choose another name in the YAML and {create}")) or {}
    loc, kind = str(b.get("location", "")).lower(), b.get("location_type")
    far = (kind == "region" and loc != f.region) or (
        kind == "multi-region" and not f.region.startswith(MULTI_REGIONS.get(loc, loc)))
    out = [warn(f"bucket {bucket}: in {loc.upper()}, the cluster in {f.region} (slower, and "
                "traffic between regions is billed)", f"a bucket in {f.region}: {create}")
           if far else ok(f"bucket {bucket}: exists ({loc.upper()})")]
    if len(results) > 1 and results[1][0] != 0:
        out.append(fail(f"bucket {bucket}: cannot write to it ({_message(results[1][2])})",
                        f"gcloud storage buckets add-iam-policy-binding {bucket} "
                        "--member=user:YOUR_EMAIL --role=roles/storage.objectAdmin"))
    elif len(results) > 1:
        out.append(ok(f"bucket {bucket}: writable"))
    if len(results) > 2 and results[2][0] != 0:
        out.append(warn(f"bucket {bucket}: could not delete the write test",
                        f"gcloud storage rm {bucket}/{PROBE}"))
    return out


@check
def parse_image(f: Facts, image: str, results: list[Result]) -> list[Finding]:
    m = IMAGE_RE.search(image)
    label = f"host image {'family ' if m and m['fam'] else ''}{m['name'] if m else image}"
    fix = (f"{LIST_IMAGES}; then `autolfads cloud init ... --force --host-image projects/"
           "deeplearning-platform-release/global/images/family/FAMILY` (or edit sourceImage)")
    if not m:
        return [warn(f"{label}: not checked (expected projects/P/global/images/...)")]
    img = answer(f, results[0], label, fix, missing=fail(
        f"{label}: not found in project {m['project']}", fix)) or {}
    state, name = (img.get("deprecated") or {}).get("state"), img.get("name")
    if state in ("OBSOLETE", "DELETED") or img.get("status") != "READY":
        return [fail(f"{label}: {name} is {state or img.get('status')}", fix)]
    if state == "DEPRECATED":
        return [warn(f"{label}: {name} is DEPRECATED", fix)]
    return [ok(f"{label}: {name} is READY")]


def _admits(rule: dict[str, Any], port: int | None) -> bool:
    """Whether the rule admits tcp to `port` (to every tcp port, when None)."""
    first, last = (1, 65535) if port is None else (port, port)
    for a in rule.get("allowed") or []:
        if a.get("IPProtocol") not in ("tcp", "all"):
            continue
        for spec in a.get("ports") or ["0-65535"]:
            lo, _, hi = str(spec).partition("-")
            if int(lo) <= first and last <= int(hi or lo):
                return True
    return False


def _exposed(f: Facts, rule: dict[str, Any]) -> Finding | None:
    """An error if the rule admits the whole internet to Ray's ports on the cluster's nodes."""
    targets = rule.get("targetTags") or []
    mine = f.tag in targets or not (targets or rule.get("targetServiceAccounts"))
    ports = ", ".join(str(p) for p in RAY_PORTS if _admits(rule, p))
    if not (mine and ports and {"0.0.0.0/0", "::/0"} & set(rule.get("sourceRanges") or [])):
        return None
    what = "every tcp port" if _admits(rule, None) else f"Ray's tcp {ports}"
    return fail(f"firewall rule {rule['name']} admits the whole internet to {what}",
                f"gcloud compute firewall-rules delete {rule['name']} --project {f.project} (or "
                "narrow its source ranges)")


@check
def parse_firewall(f: Facts, results: list[Result]) -> list[Finding]:
    every = answer(f, results[0], "firewall rules") or []
    rules = [r for r in every if r.get("direction", "INGRESS") == "INGRESS"
             and not r.get("disabled") and str(r.get("network", "")).endswith(f"/{f.network}")]
    out = [x for r in rules if (x := _exposed(f, r))] or [
        ok(f"firewall: no rule opens Ray's ports ({', '.join(map(str, RAY_PORTS))}) to the "
           "internet")]
    name = gcp_setup.firewall_rule(f.tag)
    if inside := [r["name"] for r in rules if f.tag in (r.get("sourceTags") or [])
                  and f.tag in (r.get("targetTags") or []) and _admits(r, None)]:
        return [*out, ok(f"firewall: {inside[0]} admits traffic between nodes tagged {f.tag}")]
    if any(r.get("name") == name for r in every):  # `cloud up` would keep it as it is
        return [*out, fail(f"firewall rule {name}: does not admit tcp between nodes tagged "
                           f"{f.tag} on network {f.network}", f"gcloud compute firewall-rules "
                           f"delete {name} --project {f.project} (`cloud up` creates it again)")]
    return [*out, warn(f"firewall: no rule admits traffic between the nodes (tag {f.tag}); "
                       "will be created by `cloud up`", f.rule)]
