"""Where a run lives: a local directory or a bucket (`gs://`, `s3://`, any fsspec URI).

A run directory in a bucket is worked on through a local mirror: the driver writes its logs,
best model and outputs to the mirror and uploads it after every generation (`RunStore.sync`), so
the bucket always holds the latest completed generation. PBT workers, which may run on other
machines, write their end-of-generation checkpoints straight to the store's location (`put_bytes`),
and Ray Tune keeps its own checkpoints under `<run>/pbt/tune` through its storage_path.

This module sits below `pbt/` (the workers use it), not in `cloud/`: storage is not GCP-specific.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from autolfads.errors import UserInputError


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def join(base: str | Path, *parts: str) -> str:
    if is_uri(base):
        return posixpath.join(str(base).rstrip("/"), *parts)
    return str(Path(base, *parts))


# fsspec names the package a scheme needs only in its ImportError text; say it plainly instead.
SCHEME_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "s3a": "s3fs"}


def filesystem(location: str):
    """(fsspec filesystem, path inside it) for a URI; missing drivers become one error line."""
    import fsspec

    scheme = location.split("://", 1)[0]
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except ImportError:
        pkg = SCHEME_PACKAGES.get(scheme, f"the fsspec backend for {scheme}://")
        raise UserInputError(f"{location}: reading {scheme}:// needs {pkg}; install it with: "
                             f"pip install {pkg} (or 'autolfads[cloud]')") from None
    except ValueError as e:  # unknown protocol
        raise UserInputError(f"{location}: {e}") from None
    # Workers on other machines write into the same bucket: a cached listing would be stale.
    fs.invalidate_cache()
    return fs, path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, then rename it over `path`: a reader (a
    browser reloading a live report, MATLAB, a resuming run) sees the old file or the new one,
    never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def put_bytes(location: str | Path, data: bytes) -> None:
    """Write a whole file; never half a file (temp + rename locally, one PUT in a bucket)."""
    if is_uri(location):
        fs, path = filesystem(str(location))
        fs.pipe_file(path, data)
    else:
        atomic_write(location, lambda tmp: tmp.write_bytes(data))


def put_json(location: str | Path, obj: dict) -> None:
    put_bytes(location, (json.dumps(obj, indent=2) + "\n").encode())


def get_bytes(location: str | Path) -> bytes:
    if is_uri(location):
        fs, path = filesystem(str(location))
        return fs.cat_file(path)
    return Path(location).read_bytes()


@contextlib.contextmanager
def local_copy(location: str | Path) -> Iterator[Path]:
    """A local path to read `location` from: the file itself, or for a URI a download into a
    temporary folder (h5py and scipy read local files only), removed afterwards. Errors raised
    while reading it name the URI, not the temporary file."""
    if not is_uri(location):
        yield Path(location)
        return
    uri = str(location)
    fs, path = filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="autolfads-") as tmp:
        local = Path(tmp) / (posixpath.basename(path.rstrip("/")) or "data")
        try:
            fs.get_file(path, str(local))
        except FileNotFoundError:
            raise UserInputError(f"{uri}: file not found") from None
        except Exception as e:  # noqa: BLE001  (credentials, permissions, a folder: one line)
            raise UserInputError(f"{uri}: cannot download it ({type(e).__name__}: {e})") from None
        try:
            yield local
        except UserInputError as e:
            raise UserInputError(str(e).replace(str(local), uri)) from None


def exists(location: str | Path) -> bool:
    if is_uri(location):
        fs, path = filesystem(str(location))
        return fs.exists(path)
    return Path(location).exists()


def remove(location: str | Path) -> None:
    if is_uri(location):
        fs, path = filesystem(str(location))
        if fs.exists(path):
            fs.rm(path, recursive=True)
    else:
        Path(location).unlink(missing_ok=True)


def remove_tree(location: str | Path) -> None:
    if is_uri(location):
        remove(location)
    else:
        shutil.rmtree(location, ignore_errors=True)


def glob(pattern: str) -> list[str]:
    """Paths matching `pattern`, as locations of the same kind (URI or local path)."""
    if is_uri(pattern):
        fs, path = filesystem(pattern)
        scheme = pattern.split("://", 1)[0]
        return sorted(f"{scheme}://{p}" for p in fs.glob(path))
    return sorted(_glob.glob(pattern))


class RunStore:
    """A run directory that may be in a bucket; `local` is where the driver writes."""

    def __init__(self, location: str | Path, local: Path | None = None):
        self.location = str(location)
        self.remote = is_uri(location)
        self._local = local if self.remote else Path(location)

    @property
    def local(self) -> Path:
        # A bucket run's mirror is made on first use, so a check that fails before (no run
        # there, a bad option) leaves no empty folder behind in the temp directory.
        if self._local is None:
            self._local = Path(tempfile.mkdtemp(prefix="autolfads-run-"))
        return self._local

    def path(self, *parts: str) -> str:
        """A location inside the run (in the bucket for a remote run)."""
        return join(self.location, *parts)

    def has_run(self) -> bool:
        return exists(self.path("config.yaml"))

    def is_empty(self) -> bool:
        if not self.remote:
            return not self.local.exists() or not any(self.local.iterdir())
        fs, path = filesystem(self.location)
        return not fs.exists(path) or not fs.ls(path)

    def clear(self) -> None:
        fs, path = filesystem(self.location)
        fs.rm(path, recursive=True)

    def fetch(self, *names: str) -> None:
        """Copy these run files from the bucket into the local mirror (for --resume)."""
        if not self.remote:
            return
        for name in names:
            if exists(self.path(name)):
                put_bytes(self.local / name, get_bytes(self.path(name)))

    def sync(self, skip: tuple[str, ...] = ("pbt/tune", "pbt/checkpoints"), under: str = ""
             ) -> None:
        """Upload the local mirror (everything but what workers and Ray write themselves), or
        only its folder `under`."""
        if not self.remote:
            return
        for file in sorted((self.local / under).rglob("*")):
            rel = file.relative_to(self.local).as_posix()
            if file.is_file() and not rel.startswith(skip) and not file.name.startswith("."):
                put_bytes(self.path(rel), file.read_bytes())

    def pull(self, skip: tuple[str, ...] = ("pbt/tune", "pbt/checkpoints", "best_model")
             ) -> None:
        """Copy the run's files from the bucket into the local mirror, but those under `skip`
        (checkpoints: large, and not needed to look at a run)."""
        if not self.remote:
            return
        fs, root = filesystem(self.location)
        for path, info in fs.find(root, detail=True).items():
            rel = posixpath.relpath(path, root)
            # Some stores list folder markers ("run/" objects) as files: skip those too.
            if info.get("type") == "file" and rel != "." and not path.endswith("/") \
                    and not rel.startswith(skip):
                put_bytes(self.local / rel, fs.cat_file(path))
                stamp = _modified(info)
                if stamp is not None:  # e.g. a live run's elapsed time is read from config.yaml's
                    os.utime(self.local / rel, (stamp, stamp))


def _modified(info: dict) -> float | None:
    """A stored file's modification time (POSIX seconds) from an fsspec listing entry; the key
    differs by store (S3: LastModified, GCS: updated, local: mtime)."""
    import datetime as dt

    for key in ("LastModified", "updated", "mtime", "created"):
        value = info.get(key)
        with contextlib.suppress(TypeError, ValueError):
            if isinstance(value, dt.datetime):
                return value.timestamp()
            if isinstance(value, str):
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            if isinstance(value, (int, float)):
                return float(value)
    return None
