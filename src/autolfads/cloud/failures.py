"""What a failed `gcloud` or `ray up/exec/down` said, turned into its cause and its fix.

Google Cloud's errors reach a user inside Ray's tracebacks (`ray up` calls the Compute API from
Python) or gcloud's multi-line output; the line that names the cause is rarely the last one.
`diagnose` finds it. The table is ordered: the first kind of failure found wins (a quota error
is often followed by a generic `HttpError 403`, which must not be taken for a permission).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

Fix = Callable[[re.Match], str]


def _same(text: str) -> Fix:
    return lambda _m: text


def _api(line: str) -> str:
    found = re.search(r"([\w-]+\.googleapis\.com)", line)
    return found[1] if found else "compute.googleapis.com iam.googleapis.com"


def _lacks(what: str) -> str:
    return (f"your account lacks {what}: ask the project's owner for a role that has it "
            "(Editor, roles/editor, has all that `cloud up` needs)")


def _act_as(line: str) -> str:
    target = re.search(r"service account '([^']+)'", line)
    user = re.search(r"User: '([^']+)'", line)
    if not (target and user):
        return "grant the account that creates the VMs the role roles/iam.serviceAccountUser"
    return (f"let {user[1]} use the workers' account: gcloud iam service-accounts "
            f"add-iam-policy-binding {target[1]} --member serviceAccount:{user[1]} "
            "--role roles/iam.serviceAccountUser")


FAILURES: tuple[tuple[re.Pattern, Fix], ...] = (
    (re.compile(r"Quota '([\w-]+)' exceeded\.\s+Limit:\s+([\d.]+) in region ([\w-]+)"),
     lambda m: f"raise quota {m[1]} in {m[3]} (now {m[2]}) at "
               "https://console.cloud.google.com/iam-admin/quotas, or ask for fewer GPUs; "
               "`autolfads cloud doctor CFG` lists every quota the cluster needs"),
    (re.compile(r"QUOTA_EXCEEDED|quota exceeded|exceeded quota", re.I),
     _same("a quota is too low: `autolfads cloud doctor CFG` names it and the page to raise "
           "it")),
    (re.compile(r"ZONE_RESOURCE_POOL_EXHAUSTED|stockout|does not have enough resources", re.I),
     _same("the zone has no such VMs free now (a stock-out): try again later, another zone "
           "(`autolfads cloud init --zone ...`), or on-demand instead of spot VMs")),
    (re.compile(r"billing to be enabled|BILLING_DISABLED|billing account[^\n]*(disabled|closed)",
                re.I),
     _same("billing is off for the project: link a billing account at "
           "https://console.cloud.google.com/billing/linkedaccount")),
    (re.compile(r"has not been used in project|SERVICE_DISABLED|API [^\n]*is not enabled"),
     lambda m: f"enable the API: gcloud services enable {_api(m.string)} (it takes a minute to "
               "take effect)"),
    (re.compile(r"Reauthentication failed|invalid_rapt|problem refreshing your current auth "
                r"tokens|RefreshError", re.I),
     _same("your Google login has expired: gcloud auth login, then gcloud auth "
           "application-default login")),
    (re.compile(r"DefaultCredentialsError|Could not automatically determine credentials"
                r"|application default credentials", re.I),
     _same("Ray reaches Google Cloud with application-default credentials: gcloud auth "
           "application-default login")),
    (re.compile(r"do not currently have an active account selected", re.I),
     _same("log in: gcloud auth login")),
    (re.compile(r"acceleratorTypes/([\w-]+)'? was not found|accelerator type[^\n]*(does not "
                r"exist|not found|not available)", re.I),
     _same("the zone does not offer that GPU: find one that does with `gcloud compute "
           "accelerator-types list --filter=name:TYPE`, then `autolfads cloud init --zone ...`")),
    (re.compile(r"does not have access to service account", re.I), lambda m: _act_as(m.string)),
    # A named permission first: gcloud prints PERMISSION_DENIED before it on the same line.
    (re.compile(r"Permission '?([\w.]+)'? denied|Required '([\w.]+)' permission", re.I),
     lambda m: _lacks(f"the permission {m[1] or m[2]}")),
    (re.compile(r"PERMISSION_DENIED|does not have [\w.]+ access", re.I),
     lambda m: _lacks("a permission")),
    (re.compile(r"Head node of cluster \S+ not found"),
     _same("no cluster of this YAML is running: start it with `autolfads cloud up CFG`")),
)

MAX_CAUSE = 200  # characters of the line that names the cause


def fix_for(line: str) -> str:
    """The fix for the first kind of failure `line` names, or ''."""
    return next((fix(m) for pattern, fix in FAILURES if (m := pattern.search(line))), "")


def diagnose(lines: Iterable[str]) -> str | None:
    """'<the line naming the cause>: <fix>' for the first kind of failure (in FAILURES' order)
    found in `lines`, or None."""
    text = [line.strip() for line in lines]
    for pattern, fix in FAILURES:
        for line in text:
            m = pattern.search(line)
            if m:
                start = max(0, min(m.start(), len(line) - MAX_CAUSE))
                cause = ("..." if start else "") + line[start:start + MAX_CAUSE]
                return f"{cause.rstrip('.')}: {fix(m)}"
    return None
