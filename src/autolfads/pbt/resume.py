"""Where `autolfads run --resume` continues a run, read from the run's own logs (no Ray).

A run is finished when the stop rule, under the config it is resumed with, stops it at its last
saved generation and metrics.json holds the outputs of that generation. Resuming it would start
Ray only to stop again, so it is an error that says how to train further instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autolfads.config import Config, PBTConfig, load_config
from autolfads.data.dataset import Dataset
from autolfads.data.fingerprint import check_same_data
from autolfads.errors import UserInputError
from autolfads.pbt.stop_rule import stop_reason
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri, join
from autolfads.rundir.location import Location, exists
from autolfads.rundir.pbt_log import read_hp_log, read_population


@dataclass
class ResumePoint:
    generation: int  # generations completed and saved
    members: list[dict]  # population.json's members: worker, hp, checkpoint
    bests: list[float]  # best score of generations 1..generation
    finished: str | None  # why the stop rule ends the run right here, under the current config


def resume_point(out_dir: Path, location: str, p: PBTConfig) -> ResumePoint:
    """Where `autolfads run --resume` continues the run in `out_dir` (`location` is what the user
    named it). Raises UserInputError, changing nothing, when there is nothing to continue."""
    run = Location(out_dir)
    pop = read_population(run)
    if pop is None:
        if has_results(out_dir):
            raise UserInputError(f"--resume: {location} holds results but no PBT generation to "
                                 "continue from (no pbt/population.json); choose another --out "
                                 "for a new run")
        raise UserInputError(f"--resume: {join(location, layout.POPULATION)} not found; "
                             "the run has no completed generation to continue from (start it "
                             f"again with: autolfads run --force --out {location})")
    g = int(pop["generation"])
    if len(pop["members"]) != p.population:
        raise UserInputError(f"--resume: the run has {len(pop['members'])} workers, not "
                             f"--population {p.population}; resume with the same population")
    bests = read_hp_log(run).best_by_generation(upto=g)
    if len(bests) != g:
        raise UserInputError(f"--resume: {join(location, layout.HP_LOG)} holds {len(bests)} "
                             f"generations but the run saved {g}; the log is damaged (the stop "
                             "rule reads it), so the run cannot be resumed as it was")
    finished = stop_reason(bests, p.generations, p.stop_generations, p.stop_min_improvement)
    point = ResumePoint(g, pop["members"], bests, finished)
    if finished is not None and outputs_generation(run) == g:
        raise UserInputError(finished_message(point, location, p))
    if finished is None:  # the workers go on from their checkpoints: where the run is now
        base = location if is_uri(location) else str(Path(out_dir).resolve())
        for m in point.members:  # (a run directory may have been copied or moved since)
            m["checkpoint"] = relocated(m["checkpoint"], base)
            if not exists(m["checkpoint"]):
                raise UserInputError(f"--resume: {m['checkpoint']} not found; worker "
                                     f"{m['worker']} continues from it, so the run's "
                                     "checkpoints are incomplete")
    return point


def relocated(checkpoint: str, run: str) -> str:
    """A worker checkpoint's path as recorded -> the same file under the run's location now."""
    parts = checkpoint.replace("\\", "/").split(f"/{layout.CHECKPOINTS}/")
    if len(parts) < 2:  # not in the run's checkpoint folder: left as it is
        return checkpoint
    return join(run, layout.CHECKPOINTS, *parts[-1].split("/"))


def finished_message(point: ResumePoint, location: str, p: PBTConfig) -> str:
    """One line: the run is finished, nothing was changed, and the command that trains it
    further (each rule that would stop it again at once is relaxed in that command)."""
    g = point.generation
    plateau = stop_reason(point.bests, 10**9, p.stop_generations, p.stop_min_improvement)
    flags = ""
    if g >= p.generations:
        flags += f" --generations N (N > {g})"
    if plateau is not None:
        flags += " --set pbt.stop_min_improvement=0 (else the plateau rule stops it again at once)"
    return (f"--resume: the run in {location} is finished: it stopped after generation {g} "
            f"({point.finished}); its results are in {join(location, layout.OUTPUT)}; nothing "
            f"was changed. To train it further: autolfads run --resume --out {location}{flags}")


def outputs_generation(run: Location) -> int | None:
    """The generation whose best worker the run's outputs (metrics.json) come from, if any."""
    try:
        return int((run.metrics() or {})["generations"])
    except (ValueError, KeyError, TypeError):
        return None


def has_results(out_dir: Path) -> bool:
    """Whether a run holds anything that --force would destroy: a completed generation or
    outputs."""
    return any((out_dir / name).exists() for name in layout.RESULTS)


def check_same_run(store: Location, cfg: Config, dataset: Dataset, data: object) -> None:
    """--resume continues the run it names: on its data, with its generation length (a worker
    counts generations as epochs // epochs_per_generation)."""
    check_same_data(store.read_json(layout.RUN_JSON) or {}, dataset, data)
    old = load_config(store.local / layout.CONFIG).pbt.epochs_per_generation
    if cfg.pbt.epochs_per_generation != old:
        raise UserInputError(f"--resume: the run's generations are {old} epochs each; resume "
                             f"without changing --epochs-per-generation "
                             f"({cfg.pbt.epochs_per_generation})")
