"""What runs on every node of a cluster, GCP or a lab's own hosts: the Python that has autolfads,
how it gets there, and the commands that start Ray.

A node gets autolfads in one of three ways (`NodePython`):
- wheel (the default): `cloud up` builds a wheel of this checkout into the folder named by
  `metadata.autolfads.wheel_dir`; Ray's file_mounts copy it to ~/autolfads-wheel on every node
  (rsync over SSH, laptop -> head -> workers) and `setup_commands` install it, with pinned
  dependencies, into a virtualenv ~/autolfads-venv. No image to build or push.
- an existing Python (`--python PATH`): hosts that already have the package (a shared filesystem);
  nothing is installed.
- a Docker image (`--image`, GCP only): the image has it; `python` and `ray` are on its PATH.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from autolfads import __version__

VENV = "~/autolfads-venv"
REMOTE_WHEEL_DIR = "~/autolfads-wheel"
# The same pins as the laptop (pyproject.toml, Makefile): the cluster's Ray must match the
# launcher's, and the job server on the head needs ray[default].
RAY_PIN = "ray[default,tune]==2.60.0"
TORCH_PIN = "torch==2.13.0"
# PyPI's Linux torch wheels are CUDA builds; CPU-only hosts take the much smaller CPU build.
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# PyPI's CUDA 13 build starts at Turing (compute capability 7.5); P4, P100 and V100 nodes take
# the CUDA 12.6 build, the last with their kernels (as training/process.py's message says).
LEGACY_CUDA_TORCH_INDEX = "https://download.pytorch.org/whl/cu126"
RAY_PORT = 6379
SAFE = re.compile(r"[~\w@%+=:,./$-]+")


@dataclass(frozen=True)
class NodePython:
    """The interpreter the nodes run autolfads and Ray with, and whether `cloud up` installs it."""

    python: str = f"{VENV}/bin/python"
    install: bool = True  # build and install this checkout's wheel (else: already there)

    @property
    def ray(self) -> str:
        # The `ray` script beside the interpreter: a login shell's PATH may not have it.
        if "/" not in self.python:
            return "ray"
        return posixpath.join(posixpath.dirname(self.python), "ray")

    def autolfads(self) -> list[str]:
        """argv prefix that runs the `autolfads` command with this Python."""
        return [self.python, "-m", "autolfads.cli"]


def existing_python(path: str) -> NodePython:
    return NodePython(python=path, install=False)


IMAGE_PYTHON = NodePython(python="python", install=False)


def setup_commands(node: NodePython, gpu: bool, pre_turing: bool = False) -> list[str]:
    """Install the uploaded wheel with pinned dependencies (nothing when `node.install` is off).
    `pre_turing`: the GPUs are older than Turing (gcp.GpuType.pre_turing).

    Idempotent: a second `cloud up` reinstalls only autolfads itself (the wheel changed)."""
    if not node.install:
        return []
    pip = f"{VENV}/bin/pip"
    torch = TORCH_PIN if gpu else f"{TORCH_PIN} --extra-index-url {CPU_TORCH_INDEX}"
    if gpu and pre_turing:  # that index alone: PyPI's wheel of the same version would win
        torch = f"{TORCH_PIN} --index-url {LEGACY_CUDA_TORCH_INDEX}"
    wheel = f"{REMOTE_WHEEL_DIR}/autolfads-{__version__}-py3-none-any.whl"
    return [
        f"test -x {VENV}/bin/python || python3 -m venv {VENV}",
        f"{pip} install -q --upgrade pip",
        f"{pip} install -q {torch}",
        f"{pip} install -q '{RAY_PIN}' gcsfs",
        f"{pip} install -q --force-reinstall --no-deps {wheel} && {pip} install -q {wheel}",
    ]


def start_commands(node: NodePython, head: bool, *, head_ip: str | None = None,
                   autoscaler_v1: bool = False, object_store_mb: int | None = None
                   ) -> list[str]:
    """`ray stop` then `ray start`, with token auth on and the dashboard on the head's loopback.

    `head_ip`: the address the head advertises (on a lab's hosts Ray would otherwise pick
    127.0.0.1 or the wrong interface). `autoscaler_v1`: Ray 2.60's default v2 autoscaler never
    starts the workers of an on-premise cluster (it counts the head toward min_workers)."""
    ray = node.ray
    # RAY_AUTH_MODE=token always, and explicitly: unset, a node whose home holds a token turns
    # token mode on by itself while the others do not, and workers loop on InvalidAuthToken.
    env = ["ulimit -n 65536 2>/dev/null", "export RAY_AUTH_MODE=token",
           "export RAY_USAGE_STATS_ENABLED=0"]
    if autoscaler_v1:
        # After `ray up`'s own `export RAY_enable_autoscaler_v2=1`, so this one wins.
        env.append("export RAY_enable_autoscaler_v2=0")
    start = [ray, "start", "--object-manager-port=8076"]
    if object_store_mb:
        start.append(f"--object-store-memory={object_store_mb * 1024 * 1024}")
    if head:
        start += ["--head", f"--port={RAY_PORT}", "--dashboard-host=127.0.0.1",
                  "--autoscaling-config=~/ray_bootstrap_config.yaml"]
        if head_ip:
            start.append(f"--node-ip-address={head_ip}")
    else:
        start.append(f"--address=$RAY_HEAD_IP:{RAY_PORT}")
    return [f"{sh(ray)} stop", "; ".join(env) + "; " + " ".join(map(sh, start))]


def sh(arg: str) -> str:
    """Quote for a remote shell, leaving ~ and $VAR to expand there."""
    return arg if SAFE.fullmatch(arg) else shlex.quote(arg)
