"""The GRU cell as compiled CPU kernels (gru_cell.cpp), behind train.native_cells.

The fused loops spend much of a Lorenz-size step in the GRU cell's elementwise operators, each
a separate call with microseconds of fixed cost. gru_cell.cpp does a cell in one pass. It is
built on first use with the machine's C++ compiler against the installed torch, cached under
~/.cache/autolfads/native (keyed by source, torch version, flags and CPU, since it is built
for this CPU), and loaded as torch.ops.autolfads.*. Without a compiler, or if the build fails,
`load` says why and the loops stay as they are (loops.use_native).

Like cloud/: `compile_command` builds the argv (tested on the exact list); `load` runs it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("gru_cell.cpp")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
         "-std=c++20", "-fPIC", "-shared")
BUILD_TIMEOUT_S = 300


def compile_command(cxx: str, source: Path, output: Path, include_dirs: list[str], lib_dir: str,
                    cxx11_abi: bool) -> list[str]:
    """The compiler call that builds the kernels as a shared library linked to torch's own."""
    return [cxx, *FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={int(cxx11_abi)}",
            *(f"-I{d}" for d in include_dirs), str(source), "-o", str(output),
            f"-L{lib_dir}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib_dir}"]


def _cpu_identity() -> str:
    """What -march=native depends on: the CPU's feature flags where Linux lists them."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor() or platform.machine()


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
    Returns None when loaded, else why not."""
    if loaded():
        return None
    cxx = cxx or os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        return "no C++ compiler found (set CXX, or install g++)"
    from torch.utils import cpp_extension

    lib_dir = str(Path(torch.__file__).parent / "lib")
    placeholder = Path("OUT")
    argv = compile_command(cxx, SOURCE, placeholder, cpp_extension.include_paths(), lib_dir,
                           torch._C._GLIBCXX_USE_CXX11_ABI)
    path = library_path([a for a in argv if a != str(placeholder)])
    if not path.exists():
        if say is not None:
            say(f"building the native GRU cells with {Path(cxx).name} (once per machine) ...")
        why = _build(argv, argv.index(str(placeholder)), path)
        if why:
            return f"could not build {SOURCE.name} with {cxx}: {why}"
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as e:
        return f"could not load {path}: {e}"
    return None


def _build(argv: list[str], out_at: int, path: Path) -> str | None:
    """Run the compiler into a temporary file next to `path`, then rename it to `path`:
    processes starting together (Ray workers) each build their own and the last rename wins,
    never a half-written library. Returns None on success, else the compiler's last words."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        argv = [*argv[:out_at], tmp, *argv[out_at + 1 :]]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            return " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        os.replace(tmp, path)
        tmp = None
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
