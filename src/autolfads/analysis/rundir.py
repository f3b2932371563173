"""Read a run directory (DESIGN.md §3) for `status`, `report` and `export`.

A run directory may be local or an fsspec URI (gs://, s3://, memory://, ...): a path with a
scheme is read through fsspec, anything else with plain file I/O. Every reader is tolerant of a
live run: files that do not exist yet read as None / empty, and a CSV row that is half written
(the runner appends while we read) is skipped rather than failing the whole command.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autolfads.errors import UserInputError
from autolfads.storage import filesystem, is_uri

HP_FIXED = ("generation", "worker", "score")
OUTPUT_H5 = "output/lfads_output.h5"
OUTPUT_MAT = "output/lfads_output.mat"


class RunDir:
    """One run directory, local or remote; every path argument is relative to its root."""

    def __init__(self, location: str | Path):
        self.location = str(location).rstrip("/") or "/"
        self.remote = is_uri(location)
        self._fs: Any = None
        self._root = self.location
        if self.remote:
            self._fs, self._root = filesystem(self.location)

    # ------------------------------------------------------------------ files
    def _path(self, rel: str) -> str:
        return f"{self._root.rstrip('/')}/{rel}" if rel else self._root

    def local(self, rel: str = "") -> Path:
        if self.remote:
            raise UserInputError(f"{self.location}: needs a local run directory; copy it first "
                                 "(e.g. gsutil -m cp -r URI DIR) and pass DIR")
        return Path(self._path(rel))

    def exists(self, rel: str = "") -> bool:
        if self.remote:
            return bool(self._remote(self._fs.exists, rel))
        return self.local(rel).exists()

    def is_dir(self, rel: str = "") -> bool:
        return bool(self._remote(self._fs.isdir, rel)) if self.remote else self.local(rel).is_dir()

    def _remote(self, op: Any, rel: str) -> Any:
        """A storage call whose failure (credentials, network, permissions) becomes one clear
        error line instead of a cloud SDK's traceback."""
        try:
            return op(self._path(rel))
        except FileNotFoundError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise UserInputError(f"{self.location}/{rel}: cannot read ({type(e).__name__}: "
                                 f"{first}); check the URI and your cloud credentials") from None

    def read_bytes(self, rel: str) -> bytes:
        """The whole file in one storage call (so a remote read error is one clear line too)."""
        if self.remote:
            return self._remote(self._fs.cat_file, rel)
        return self.local(rel).read_bytes()

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

    def check(self, command: str) -> None:
        """A clear error when DIR is missing or is not an autolfads run directory."""
        if not self.exists():
            raise UserInputError(f"{self.location}: run directory not found")
        if not self.is_dir():
            raise UserInputError(f"{self.location}: is a file; `autolfads {command}` takes the "
                                 "run directory given to --out")
        if not any(self.exists(m) for m in ("config.yaml", "metrics.json", "pbt/hp_log.csv")):
            raise UserInputError(f"{self.location}: not an autolfads run directory (no "
                                 "config.yaml); pass the directory given to `autolfads run --out`")

    # ------------------------------------------------------------------ run files
    def config(self) -> dict:
        """config.yaml as a plain dict ({} when missing): read loosely so that a run written by
        another version of autolfads still gets a status and a report."""
        text = self.read_text("config.yaml")
        try:
            raw = yaml.safe_load(text) if text else {}
        except yaml.YAMLError:
            raw = {}
        return raw if isinstance(raw, dict) else {}

    def metrics(self) -> dict | None:
        return self.read_json("metrics.json")

    def is_pbt(self) -> bool:
        return self.exists("pbt") or self.exists("run.json")

    def hp_log(self) -> HPLog:
        return HPLog.parse(self.read_text("pbt/hp_log.csv") or "")

    def decisions(self) -> dict[tuple[int, int], Decision]:
        """(generation, worker) -> that worker's exploit decision at the end of the generation."""
        out: dict[tuple[int, int], Decision] = {}
        for row in _rows(self.read_text("pbt/decision_log.csv") or ""):
            try:
                g, w = int(row["generation"]), int(row["worker"])
                exploited = row["exploited"].strip().lower() == "true"
                src = int(row["source_worker"]) if exploited else None
                out[(g, w)] = Decision(exploited, src, _float(row.get("source_score")))
            except (KeyError, ValueError, AttributeError):
                continue  # a half-written last line of a live run
        return out

    def train_log(self) -> list[dict[str, float]]:
        rows = []
        for row in _rows(self.read_text("train_log.csv") or ""):
            try:
                rows.append({k: _float(v) for k, v in row.items() if k})
            except (ValueError, TypeError):
                continue
        return rows


@dataclass
class Decision:
    exploited: bool
    source: int | None
    source_score: float


@dataclass
class HPLog:
    """pbt/hp_log.csv: the score and hyperparameters of every worker in every generation."""

    names: list[str] = field(default_factory=list)  # hyperparameter columns, in file order
    rows: list[dict[str, float]] = field(default_factory=list)  # generation/worker kept as floats

    @classmethod
    def parse(cls, text: str) -> HPLog:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if not header or list(header[:3]) != list(HP_FIXED):
            return cls()
        names = header[3:]
        rows = []
        for rec in reader:
            if len(rec) != len(header):
                continue  # a line the runner is still appending
            try:
                rows.append({k: float(v) if v != "" else math.nan for k, v in zip(header, rec,
                                                                                strict=True)})
            except ValueError:
                continue
        return cls(names, rows)

    @property
    def generations(self) -> list[int]:
        return sorted({int(r["generation"]) for r in self.rows})

    @property
    def workers(self) -> list[int]:
        return sorted({int(r["worker"]) for r in self.rows})

    def table(self, column: str) -> np.ndarray:
        """generations x workers array of one column (NaN where a row is missing)."""
        gens, workers = self.generations, self.workers
        gi = {g: i for i, g in enumerate(gens)}
        wi = {w: i for i, w in enumerate(workers)}
        out = np.full((len(gens), len(workers)), np.nan)
        for r in self.rows:
            out[gi[int(r["generation"])], wi[int(r["worker"])]] = r[column]
        return out

    def latest(self) -> list[dict[str, float]]:
        if not self.rows:
            return []
        g = max(self.generations)
        return sorted((r for r in self.rows if int(r["generation"]) == g),
                      key=lambda r: r["worker"])

    def best_by_generation(self) -> list[float]:
        """Lowest finite score of each generation (inf when all NaN), as the stopper sees it."""
        scores = self.table("score")
        return [float(np.nanmin(s)) if np.isfinite(s).any() else math.inf for s in scores]

    def best(self) -> dict[str, float] | None:
        finite = [r for r in self.rows if math.isfinite(r["score"])]
        return min(finite, key=lambda r: r["score"]) if finite else None


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text))) if text else []


def _float(v: object) -> float:
    return math.nan if v in (None, "") else float(v)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- outputs


@dataclass
class Outputs:
    """output/lfads_output.h5 in memory: arrays trials first, original trial order, 0-based."""

    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
    origin: str  # which file they came from, for messages

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    @property
    def bin_size_ms(self) -> float | None:
        v = self.attrs.get("bin_size_ms")
        return float(v) if v is not None and np.isfinite(v) and v > 0 else None


def read_outputs(rd: RunDir) -> Outputs | None:
    """The run's outputs from the .h5 or, when only the .mat is left, from the .mat (converted
    back to trials first and 0-based indices); None when neither exists yet (a live run)."""
    if rd.exists(OUTPUT_H5):
        import h5py

        data = rd.read_bytes(OUTPUT_H5)  # h5py needs seekable access; outputs are small
        try:
            with h5py.File(io.BytesIO(data), "r") as f:
                arrays = {k: np.asarray(f[k][()]) for k in f if isinstance(f[k], h5py.Dataset)}
                attrs = {k: _plain(v) for k, v in f.attrs.items()}
        except OSError as e:
            raise UserInputError(f"{rd.location}/{OUTPUT_H5}: not a readable HDF5 file ({e})") \
                from None
        return Outputs(arrays, attrs, f"{rd.location}/{OUTPUT_H5}")
    if rd.exists(OUTPUT_MAT):
        return _outputs_from_mat(rd)
    return None


def _outputs_from_mat(rd: RunDir) -> Outputs:
    import scipy.io

    try:
        mat = scipy.io.loadmat(io.BytesIO(rd.read_bytes(OUTPUT_MAT)))
    except (ValueError, OSError, NotImplementedError) as e:
        raise UserInputError(f"{rd.location}/{OUTPUT_MAT}: not a readable .mat file ({e})") \
            from None
    arrays: dict[str, np.ndarray] = {}
    for key in ("rates", "factors", "inferred_inputs", "truth"):
        if key in mat:
            arrays[key] = np.ascontiguousarray(np.asarray(mat[key]).transpose(2, 1, 0))
    if "ic_mean" in mat:
        arrays["ic_mean"] = np.ascontiguousarray(np.asarray(mat["ic_mean"]).T)
    for key in ("train_inds", "valid_inds"):
        if key in mat:  # MATLAB indices are 1-based
            arrays[key] = np.asarray(mat[key]).ravel().astype(np.int64) - 1
    if "train_inds" in arrays and "valid_inds" in arrays:
        for kind in ("rates", "factors", "inferred_inputs", "ic_mean"):
            if kind in arrays:
                for split in ("train", "valid"):
                    arrays[f"{split}_{kind}"] = arrays[kind][arrays[f"{split}_inds"]]
    attrs: dict[str, Any] = {"layout": "trials_time_neurons"}
    if "bin_size_ms" in mat:
        attrs["bin_size_ms"] = float(np.asarray(mat["bin_size_ms"]).ravel()[0])
    if "layout" in mat:
        attrs["input_layout"] = str(np.asarray(mat["layout"]).ravel()[0])
    return Outputs(arrays, attrs, f"{rd.location}/{OUTPUT_MAT}")


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    return v
