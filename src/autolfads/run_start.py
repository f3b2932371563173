"""Starting a run in its directory, or resuming one: a new run never lands on an existing one
(or on foreign files), run.json says where its data came from, and a resume finds that data and
keeps the split it trained with."""

from __future__ import annotations

from pathlib import Path

from autolfads.config import Config
from autolfads.data.dataset import Dataset
from autolfads.data.fingerprint import data_fingerprint
from autolfads.errors import UserInputError
from autolfads.inputs import DataLike
from autolfads.results import check_inputs, foreign, prepare_run_dir
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri
from autolfads.rundir.location import Location, put_json
from autolfads.rundir.pbt_log import read_population


def keep_old_split(cfg: Config, config_path: Path) -> None:
    """A run started before test splits existed trained without one: resuming it must not move
    trials out of its training set."""
    import yaml

    data = (yaml.safe_load(config_path.read_text()) or {}).get("data") or {}
    if "test_every" not in data and "test_fraction" not in data:
        if cfg.data.split == "every_nth":  # (only its own split's key: the other is unused)
            cfg.data.test_every = 0
        else:
            cfg.data.test_fraction = 0.0


def prepare_store(store: Location, force: bool, inputs: tuple[object, ...] = ()
                  ) -> None:
    """A new run never lands on an existing one unless --force, and never on foreign files.
    For a run with results (a completed generation, outputs) --force is never suggested: the
    one-line fix people copy must not be the one that deletes them."""
    if not force:
        done = _progress(store)
        if done is not None:
            raise UserInputError(f"--out {store.location}: holds an AutoLFADS run ({done}); "
                                 "continue it with --resume, or choose another --out")
    if not store.remote:
        prepare_run_dir(store.local, force, resumable=True, inputs=inputs)
        return
    if store.is_empty():
        return
    run = any(store.exists(f) for f in layout.RUN_EVIDENCE)  # as prepare_run_dir decides
    check_inputs(store.location, inputs, run)
    if not run:
        raise foreign(store.location, store.names())
    if not force:
        raise UserInputError(f"--out {store.location}: holds an earlier run; use --resume to "
                             "continue it, --force to replace it, or choose another --out")
    store.clear(layout.RUN_ENTRIES)  # what a run writes; anything else there stays


def _progress(store: Location) -> str | None:
    """What an existing run in `store` has done, when that is anything --force would destroy."""
    if store.exists(layout.METRICS):
        return "finished, with outputs"
    pop = read_population(store)
    if pop is not None:
        return f"{pop['generation']} generations completed"
    return None


def write_run_json(out_dir: Path, command: str, data: DataLike, dataset: Dataset) -> None:
    """run.json: which command made the run, where its data came from (an absolute path, so
    --resume works from any directory; None for the built-in data or an array passed from
    Python) and what identifies that data and its split."""
    location = None
    if isinstance(data, (str, Path)):
        location = str(data) if is_uri(data) else str(Path(data).resolve())
    put_json(out_dir / layout.RUN_JSON, {
        "command": command, "data": location,
        "data_in_memory": data is not None and not isinstance(data, (str, Path)),
        **data_fingerprint(dataset)})


def resume_data(out_dir: Path, data: DataLike) -> DataLike:
    """The data to --resume on: the one given, else the file the run recorded."""
    recorded = Location(out_dir).read_json(layout.RUN_JSON) or {}
    if data is None and recorded.get("data_in_memory"):
        raise UserInputError("--resume: the run trained on an array passed from Python; pass "
                             "the same array again")
    return recorded.get("data") if data is None else data
