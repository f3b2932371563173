"""The GRU cell as compiled CPU kernels (gru_cell.cpp), behind train.native_cells.

The fused loops spend much of a Lorenz-size step in the GRU cell's elementwise operators, each
a separate call with microseconds of fixed cost. gru_cell.cpp does a cell in one pass. It is
built on first use with the machine's C++ compiler against the installed torch, cached under
$XDG_CACHE_HOME/autolfads/native (default ~/.cache; keyed by source, torch version, flags and
CPU, since it is built for this CPU) with a checksum, and loaded as torch.ops.autolfads.*.
Without a compiler, or if anything fails, `load` says why and the loops stay as they are
(loops.use_native).

Like cloud/: `compile_command` builds the argv (tested on the exact list); `load` runs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # not POSIX: builds are not serialised
    fcntl = None

SOURCE = Path(__file__).with_name("gru_cell.cpp")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
         "-std=c++20", "-fPIC", "-shared")
BUILD_TIMEOUT_S = 300
STALE_TMP_S = 3600  # a temporary library this old is from a build that was killed


def compile_command(cxx: str, source: Path, output: Path, include_dirs: list[str], lib_dir: str,
                    cxx11_abi: bool) -> list[str]:
    """The compiler call that builds the kernels as a shared library linked to torch's own."""
    return [cxx, *FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={int(cxx11_abi)}",
            *(f"-I{d}" for d in include_dirs), str(source), "-o", str(output),
            f"-L{lib_dir}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib_dir}"]


def _cpu_identity() -> str:
    """What -march=native depends on: the CPU's feature list where Linux gives one (x86
    "flags", ARM "Features"), with the architecture."""
    ident = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        ident += next((line for line in f if line.startswith(("flags", "Features"))), "")
    return ident or platform.processor()


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(root) / "autolfads" / "native"


def library_path(argv_key: list[str]) -> Path:
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), " ".join(argv_key).encode(),
                 _cpu_identity().encode()):
        h.update(part)
        h.update(b"\0")
    return cache_dir() / h.hexdigest()[:16] / "gru_cell.so"


def loaded() -> bool:
    return hasattr(torch.ops.autolfads, "gru_cell_forward")


def load(cxx: str | None = None, say: Callable[[str], None] | None = None) -> str | None:
    """Build (once per machine; `say` hears when a build starts) and load the kernels.
    Returns None when loaded, else why not; never raises (the caller trains without them)."""
    if loaded():
        return None
    cxx = cxx or os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        return "no C++ compiler found (set CXX, or install g++)"
    try:
        from torch.utils import cpp_extension  # imports setuptools

        lib_dir = str(Path(torch.__file__).parent / "lib")
        includes = cpp_extension.include_paths()

        def argv_for(out: Path) -> list[str]:
            return compile_command(cxx, SOURCE, out, includes, lib_dir,
                                   torch._C._GLIBCXX_USE_CXX11_ABI)

        path = library_path(argv_for(Path("-")))
        path.parent.mkdir(parents=True, exist_ok=True)
        with _build_lock(path.parent):  # one build per machine, not one per starting worker
            if not _intact(path):
                if say is not None:
                    say(f"building the native GRU cells with {Path(cxx).name} "
                        "(once per machine) ...")
                why = _build(argv_for, path)
                if why is not None:
                    return f"could not build {SOURCE.name} with {cxx}: {why}"
        torch.ops.load_library(str(path))
    except Exception as e:  # noqa: BLE001  (anything: train without them, and say why)
        return f"could not build or load {SOURCE.name}: {type(e).__name__}: {e}"
    return None


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(path: Path) -> bool:
    """The library exists and is the file its build wrote (a cut-short or damaged file can
    crash the process that loads it, so it is rebuilt instead)."""
    mark = path.with_name(path.name + ".sha256")
    return path.exists() and mark.exists() and mark.read_text().strip() == _checksum(path)


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(folder / "build.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(argv_for: Callable[[Path], list[str]], path: Path) -> str | None:
    """Run the compiler into a temporary file next to `path`, then rename it to `path` and
    write its checksum: never a half-written library under the final name. Returns None on
    success, else the compiler's last words."""
    for old in path.parent.glob("tmp*.so"):  # left by a build that was killed
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_TMP_S:
                old.unlink()
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        done = subprocess.run(argv_for(Path(tmp)), capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            words = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return " / ".join(words) or f"the compiler exited with status {done.returncode}"
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        mark = path.with_name(path.name + ".sha256")
        mark_tmp = mark.with_name(mark.name + f".{os.getpid()}")
        mark_tmp.write_text(_checksum(path) + "\n")
        os.replace(mark_tmp, mark)
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
