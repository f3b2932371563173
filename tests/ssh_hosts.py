"""Test hosts a cluster launcher can log in to: network namespaces on a bridge, each running its
own sshd in its own PID and mount namespace with its own HOME (RAY_NOTES.md, on-premise provider).

    with SshHosts(tmp_path, n=2) as hosts:      # 10.88.X.1 (head), 10.88.X.2, ...
        hosts.ips, hosts.key, hosts.laptop_env()

This machine (the "laptop") reaches them through the bridge, which holds 10.88.X.254. Nothing
leaves the bridge's subnet. Killing a host's sshd (PID 1 of its PID namespace) ends every process
started on that host; `close` does that, removes the namespaces and the bridge, and the files
Ray's launcher leaves in /tmp for this cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def missing_tools() -> str | None:
    """Why these hosts cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen", "rsync"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian: apt-get install openssh-server rsync)"
    if not Path(SSHD).is_file():
        return f"{SSHD} is not installed (Debian: apt-get install openssh-server)"
    return None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


class SshHosts:
    def __init__(self, root: Path, n: int):
        self.tag = uuid.uuid4().hex[:6]
        self.net = f"10.88.{random.randint(1, 250)}"
        self.ips = [f"{self.net}.{i + 1}" for i in range(n)]
        self.root = root
        # Short: Ray's Unix socket paths under each host's temp dir must stay under 107 bytes.
        self.tmp = Path(f"/tmp/alf{self.tag}")
        self.bridge = f"alfb{self.tag}"
        self.namespaces: list[str] = []
        self.sshd: list[subprocess.Popen] = []
        self.key = root / "id_ed25519"

    # --- set-up ---------------------------------------------------------------------------
    def __enter__(self) -> SshHosts:
        try:
            self._network()
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
            (self.root / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
            for i, ip in enumerate(self.ips):
                self._start_host(i, ip)
            self._wait_for_ssh()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _network(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.net}.254/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, ip in enumerate(self.ips):
            ns, outer, inner = f"alf{self.tag}h{i}", f"alf{self.tag}v{i}", f"alf{self.tag}p{i}"
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", outer, "master", self.bridge)
            sh("ip", "link", "set", outer, "up")
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
            sh("ip", "-n", ns, "link", "set", inner, "up")
            # The job server listens on the host's 127.0.0.1.
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def _home(self, i: int) -> Path:
        """A HOME for host i, mounted over /root there; what the tests need from under /root
        (the interpreter's pyenv, maybe the checkout) is bound into it at the same place."""
        home = self.root / f"home{i}"
        tmp = self.tmp / f"h{i}"
        tmp.mkdir(parents=True)
        home.mkdir()
        bindir = Path(sys.executable).parent
        (home / ".bashrc").write_text(
            f'export PATH="{bindir}:$PATH"\nexport TMPDIR="{tmp}"\n'
            "export RAY_USAGE_STATS_ENABLED=0\n")
        (home / ".profile").write_text(". ~/.bashrc\n")
        return home

    def _start_host(self, i: int, ip: str) -> None:
        home = self._home(i)
        hostkey = self.root / f"hostkey{i}"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
        conf = self.root / f"sshd{i}.conf"
        conf.write_text("\n".join([
            f"ListenAddress {ip}", "Port 22", f"HostKey {hostkey}",
            f"PidFile {self.root / f'sshd{i}.pid'}", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "Subsystem sftp internal-sftp", ""]))
        binds = []
        for need in {Path(sys.executable).resolve().parents[2], Path(__file__).resolve().parent,
                     self.root}:
            with contextlib.suppress(ValueError):
                rel = need.relative_to("/root")
                (home / rel).mkdir(parents=True, exist_ok=True)
                binds.append(f"mount --rbind {need} {home / rel}")
        script = " && ".join([*binds, f"mount --rbind {home} /root", "mkdir -p /run/sshd",
                              f"exec {SSHD} -D -e -f {conf}"])
        self.sshd.append(subprocess.Popen(
            ["ip", "netns", "exec", self.namespaces[i], "unshare", "--pid", "--fork",
             "--mount", "--mount-proc", "bash", "-c", script],
            stdout=subprocess.DEVNULL, stderr=(self.root / f"sshd{i}.log").open("w")))

    def _wait_for_ssh(self, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        for ip in self.ips:
            while self.run(ip, "true", check=False).returncode != 0:
                if time.time() > deadline:
                    raise RuntimeError(f"sshd on {ip} did not answer: "
                                       f"{(self.root / 'sshd0.log').read_text()[-2000:]}")
                time.sleep(0.3)

    # --- use --------------------------------------------------------------------------------
    def run(self, ip: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o",
             "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
             f"root@{ip}", command], capture_output=True, text=True, check=check, timeout=60)

    def unused_ip(self) -> str:
        """An address in the hosts' subnet that no host holds."""
        return f"{self.net}.{len(self.ips) + 1}"

    def laptop_env(self) -> dict[str, str]:
        """The environment for `autolfads cloud ...` here: its own HOME (the Ray token) and
        TMPDIR (the launcher's state files), so nothing of this machine's user is touched."""
        home, tmp = self.root / "laptop", self.tmp / "laptop"
        home.mkdir(exist_ok=True)
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp),
               "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for key in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS"):
            env.pop(key, None)
        return env

    def ray_processes(self, i: int) -> list[str]:
        """Command lines of Ray's processes on host i."""
        out = sh("ip", "netns", "pids", self.namespaces[i], check=False).stdout.split()
        found = []
        for pid in out:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                if "raylet" in cmd or "gcs_server" in cmd or "ray::" in cmd:
                    found.append(cmd[:80])
        return found

    # --- tear-down --------------------------------------------------------------------------
    def close(self, cluster_name: str | None = None) -> None:
        for proc in self.sshd:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)  # PID 1 of the host: everything there ends
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for ns in self.namespaces:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.3)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if cluster_name:
            user = hashlib.sha256(b"root").hexdigest()[:10]
            folder = Path("/tmp") / f"ray_ssh_{user}"
            shutil.rmtree(folder / hashlib.sha256(cluster_name.encode()).hexdigest()[:10],
                          ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when no other cluster's control sockets are left there
