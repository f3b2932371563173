"""Where a run lives: a local directory or a bucket (`gs://`, `s3://`, any fsspec URI).

`Location` is a run directory (or a single file, such as a data file) in either place. Reading is
tolerant of a live run: a file that does not exist yet reads as None, and a storage failure
(credentials, network, permissions) is one error line, not a cloud SDK's traceback.

A run directory in a bucket is worked on through a local mirror: the driver writes its logs,
best model and outputs to the mirror and uploads it after every generation (`Location.sync`), so
the bucket always holds the latest completed generation. PBT workers, which may run on other
machines, write their end-of-generation checkpoints straight to the run's location (`put_bytes`),
and Ray Tune keeps its own checkpoints under `<run>/pbt/tune` through its storage_path.

Every write is atomic (`atomic_write`: a temp file beside the target, then a rename; one PUT in a
bucket), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import glob as _glob
import io
import json
import math
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri, join

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


def atomic_write(path: str | Path, write: Callable[[Path], None],
                 protect: str | Path | None = None) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, then rename it over `path`: a reader (a
    browser reloading a live report, MATLAB, a resuming run) sees the old file or the new one,
    never half of one. `protect`: a file never to write over (the input data)."""
    path = Path(path)
    if protect is not None and Path(protect).is_file() and path.exists() \
            and os.path.samefile(path, protect):
        raise UserInputError(f"{path}: is the input data file; refusing to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # read-only, a file where a folder should be, ...
        raise UserInputError(f"{path}: cannot write there ({e.strerror or e}); choose a folder "
                             "you can write to") from None
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(e, OSError) and e.errno is not None:  # a full disk, a quota
            raise UserInputError(f"{path}: could not be written ({e.strerror}); nothing was "
                                 "changed there") from None
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


class Location:
    """A run directory (or one file), local or in a bucket; `rel` arguments are relative to it.
    `local` is where the driver writes: the directory itself, or a bucket run's local mirror."""

    def __init__(self, location: str | Path, local: Path | None = None):
        self.location = str(location).rstrip("/") or "/"
        self.remote = is_uri(self.location)
        self._local = local if self.remote else Path(self.location)
        if self.remote:
            filesystem(self.location)  # an unknown scheme or a missing driver: one line, now

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

    # ------------------------------------------------------------------ reading
    def _remote(self, op: str, rel: str) -> Any:
        """A storage call whose failure (credentials, network, permissions) becomes one clear
        error line instead of a cloud SDK's traceback."""
        fs, root = filesystem(self.location)
        try:
            return getattr(fs, op)(f"{root.rstrip('/')}/{rel}" if rel else root)
        except FileNotFoundError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise UserInputError(f"{self.location}/{rel}: cannot read ({type(e).__name__}: "
                                 f"{first}); check the URI and your cloud credentials") from None

    def exists(self, rel: str = "") -> bool:
        return bool(self._remote("exists", rel)) if self.remote else (self.local / rel).exists()

    def is_dir(self, rel: str = "") -> bool:
        return bool(self._remote("isdir", rel)) if self.remote else (self.local / rel).is_dir()

    def read_bytes(self, rel: str) -> bytes:
        """The whole file in one storage call (so a remote read error is one clear line too)."""
        return self._remote("cat_file", rel) if self.remote else (self.local / rel).read_bytes()

    def read_text(self, rel: str) -> str | None:
        try:
            data = self.read_bytes(rel)
        except (FileNotFoundError, NotADirectoryError):
            return None  # not written yet (a live run)
        return data.decode("utf-8", errors="replace")

    def read_json(self, rel: str) -> dict | None:
        text = self.read_text(rel)
        if not text:
            return None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return None  # caught mid-replace on a file system without atomic rename
        return obj if isinstance(obj, dict) else None

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """A local path to read this file from: the file itself, or for a URI a download into a
        temporary folder (h5py and scipy read local files only), removed afterwards. Errors
        raised while reading it name the URI, not the temporary file."""
        if not self.remote:
            yield self.local
            return
        uri = self.location
        fs, path = filesystem(uri)
        with tempfile.TemporaryDirectory(prefix="autolfads-") as tmp:
            local = Path(tmp) / (posixpath.basename(path.rstrip("/")) or "data")
            try:
                fs.get_file(path, str(local))
            except FileNotFoundError:
                raise UserInputError(f"{uri}: file not found") from None
            except Exception as e:  # noqa: BLE001  (credentials, permissions, a folder: one line)
                raise UserInputError(f"{uri}: cannot download it ({type(e).__name__}: {e})") \
                    from None
            try:
                yield local
            except UserInputError as e:
                raise UserInputError(str(e).replace(str(local), uri)) from None

    # ------------------------------------------------------------------ the run's files
    def check(self, command: str) -> None:
        """A clear error when the location is missing or is not an autolfads run directory."""
        if not self.exists():
            raise UserInputError(f"{self.location}: run directory not found")
        if not self.is_dir():
            raise UserInputError(f"{self.location}: is a file; `autolfads {command}` takes the "
                                 "run directory given to --out")
        if not any(self.exists(m) for m in layout.RUN_FILES):
            raise UserInputError(f"{self.location}: not an autolfads run directory (no "
                                 "config.yaml); pass the directory given to `autolfads run --out`")

    def has_run(self) -> bool:
        return self.exists(layout.CONFIG)

    def config(self) -> dict:
        """config.yaml as a plain dict ({} when missing): read loosely so that a run written by
        another version of autolfads still gets a status and a report."""
        text = self.read_text(layout.CONFIG)
        try:
            raw = yaml.safe_load(text) if text else {}
        except yaml.YAMLError:
            raw = {}
        return raw if isinstance(raw, dict) else {}

    def metrics(self) -> dict | None:
        return self.read_json(layout.METRICS)

    def is_pbt(self) -> bool:
        """An `autolfads run` (PBT), also before its first generation made pbt/."""
        if self.exists(layout.PBT):
            return True
        run = self.read_json(layout.RUN_JSON)
        if not isinstance(run, dict):
            return False
        if "command" in run:
            return run["command"] == "run"
        # Older runs: `train` wrote run.json too, and leaves its log or its model.
        return not any(self.exists(f) for f in (layout.TRAIN_LOG, layout.MODEL_CHECKPOINT,
                                                 layout.TRAIN_STATE))

    def train_log(self) -> list[dict[str, float]]:
        rows = []
        for row in csv.DictReader(io.StringIO(self.read_text(layout.TRAIN_LOG) or "")):
            with contextlib.suppress(ValueError, TypeError):  # a line still being written
                rows.append({k: number(v) for k, v in row.items() if k})
        return rows

    # ------------------------------------------------------------------ a bucket run's mirror
    def is_empty(self) -> bool:
        if not self.remote:
            return not self.local.exists() or not any(self.local.iterdir())
        fs, path = filesystem(self.location)
        return not fs.exists(path) or not fs.ls(path)

    def names(self) -> list[str]:
        """The names of the entries at the top of this location (a folder or a bucket prefix)."""
        if not self.remote:
            return sorted(e.name for e in self.local.iterdir()) if self.local.is_dir() else []
        fs, path = filesystem(self.location)
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False))

    def clear(self, names: tuple[str, ...]) -> None:
        """Remove these entries of the run (files or folders), where they exist."""
        fs, path = filesystem(self.location)
        for name in names:
            if fs.exists(f"{path}/{name}"):
                fs.rm(f"{path}/{name}", recursive=True)

    def fetch(self, *names: str) -> None:
        """Copy these run files from the bucket into the local mirror (for --resume)."""
        if not self.remote:
            return
        for name in names:
            if exists(self.path(name)):
                put_bytes(self.local / name, get_bytes(self.path(name)))

    def sync(self, skip: tuple[str, ...] = layout.NOT_UPLOADED, under: str = "") -> None:
        """Upload the local mirror (everything but what workers and Ray write themselves), or
        only its folder `under`."""
        if not self.remote:
            return
        for file in sorted((self.local / under).rglob("*")):
            rel = file.relative_to(self.local).as_posix()
            if file.is_file() and not rel.startswith(skip) and not file.name.startswith("."):
                put_bytes(self.path(rel), file.read_bytes())

    def pull(self, skip: tuple[str, ...] = layout.NOT_PULLED) -> None:
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


def number(v: object) -> float:
    """A CSV cell as a float; an empty (or missing) cell is NaN."""
    return math.nan if v in (None, "") else float(v)  # type: ignore[arg-type]


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
