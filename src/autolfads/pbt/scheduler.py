"""Binary-tournament Population Based Training on Ray Tune (the AutoLFADS rules, DESIGN.md §5).

At the end of every generation (K epochs; all workers synchronised):

  exploit  each worker w meets one other worker o drawn at random. If o's score (smoothed
           validation reconstruction cost, lower is better) is strictly better, w takes o's
           weights, optimizer state and hyperparameters. A worker whose score is NaN always
           copies (from a worker with a finite score).
  explore  only after an exploit: the copied hyperparameters are perturbed (search_space.perturb).
  stop     stop_rule, through stopper.PBTStopper, decides after each generation; the last one
           has no exploits.

Ray's PopulationBasedTraining does the mechanics (pausing at the generation boundary, saving the
sources' checkpoints, restarting a trial from another trial's checkpoint); this subclass replaces
its quantile rule with the tournament, its explore with ours, and reports every decision as a
`GenerationRecord` (rundir/records.py: plain data, no Ray, shared with the logs' reader).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining

from autolfads.pbt.search_space import HyperParam, perturb
from autolfads.pbt.stopper import PBTStopper
from autolfads.rundir.records import Decision, GenerationRecord, best_score

SCORE = "score"
GENERATION = "generation"


def tournament(scores: dict[int, float], rng: np.random.Generator) -> dict[int, int | None]:
    """worker -> the worker it copies (None: keeps its own state). Lower scores are better."""
    workers = sorted(scores)
    finite = [w for w in workers if math.isfinite(scores[w])]
    out: dict[int, int | None] = {}
    for w in workers:
        if not math.isfinite(scores[w]):
            # A diverged worker always copies, from a worker that can still be copied.
            others = [o for o in finite if o != w]
            out[w] = int(rng.choice(others)) if others else None
            continue
        o = int(rng.choice([o for o in workers if o != w]))
        out[w] = o if math.isfinite(scores[o]) and scores[o] < scores[w] else None
    return out


def member_config(worker: int, hparams: dict[str, float], init_checkpoint: str | None = None
                  ) -> dict:
    """The trial config: which worker this is, its hyperparameters and (on resume) where its
    weights start from."""
    return {"member": {"worker": worker, "hp": dict(hparams), "init_checkpoint": init_checkpoint}}


class BinaryTournamentPBT(PopulationBasedTraining):
    """Synchronous PBT whose exploit is a binary tournament; one Ray trial per worker."""

    def __init__(
        self,
        space: dict[str, HyperParam],
        stopper: PBTStopper,
        seed: int = 0,
        start_generation: int = 0,
        on_generation: Callable[[GenerationRecord], None] | None = None,
    ):
        super().__init__(
            time_attr=GENERATION,
            metric=SCORE,
            mode="min",
            perturbation_interval=1,
            # A resumed run's first generation is start_generation + 1; Ray's synchronous PBT
            # waits for that time before its first round (its default would wait for time 1).
            burn_in_period=start_generation + 1,
            synch=True,
            custom_explore_fn=lambda config: config,  # unused: _get_new_config is ours
            log_config=False,
            require_attrs=True,
        )
        self.space = space
        self.stopper = stopper
        self.rng = np.random.default_rng(seed)
        self.on_generation = on_generation
        self.history: list[GenerationRecord] = []
        self._round: GenerationRecord | None = None
        self._sources: dict[Trial, Trial | None] = {}
        self._configs: dict[Trial, dict] = {}
        self._visited: set[Trial] = set()

    # Ray calls _quantiles() once per synchronised round and then _checkpoint_or_exploit() for
    # every trial. Returning no quantiles makes Ray visit each trial exactly once; we decide there.
    def _quantiles(self) -> tuple[list[Trial], list[Trial]]:
        return [], []

    def _checkpoint_or_exploit(self, trial, tune_controller, upper_quantile, lower_quantile):
        if self._round is None:
            self._start_round(tune_controller)
        # Every worker may be someone's source: Ray's "upper quantile" branch saves its checkpoint
        # of this generation before anybody copies anything.
        super()._checkpoint_or_exploit(trial, tune_controller, [trial], [])
        self._visited.add(trial)
        if self._visited >= set(self._sources):
            self._finish_round(tune_controller)

    def _start_round(self, tune_controller) -> None:
        trials = [t for t in tune_controller.get_trials() if not t.is_finished()]
        scores: dict[int, float] = {}
        by_worker: dict[int, Trial] = {}
        generation = 0
        for t in trials:
            result = self._trial_state[t].last_result or {}
            w = t.config["member"]["worker"]
            scores[w] = float(result.get(SCORE, math.nan))
            by_worker[w] = t
            generation = max(generation, int(result.get(GENERATION, 0)))
        stopping = self.stopper.record(generation, best_score(scores.values()))
        # The last generation is logged like the others, but nobody copies anybody any more.
        picks = {w: None for w in scores} if stopping else tournament(scores, self.rng)
        self._round = GenerationRecord(generation)
        self._sources = {by_worker[w]: (by_worker[s] if s is not None else None)
                         for w, s in picks.items()}
        # Snapshot configs: a source may itself copy someone in this round.
        self._configs = {t: copy.deepcopy(t.config) for t in trials}
        for w in sorted(scores):
            s = picks[w]
            self._round.decisions.append(Decision(
                worker=w, score=scores[w], hparams=dict(by_worker[w].config["member"]["hp"]),
                source=s, source_score=scores[s] if s is not None else None))
        self._visited = set()

    def _finish_round(self, tune_controller) -> None:
        record = self._round
        assert record is not None
        decisions = {d.worker: d for d in record.decisions}
        # Worst first: a worse worker copies a better one, so whoever copies a worker that is
        # itself copying gets processed before that worker's own state is replaced.
        for trial in sorted(self._sources, key=lambda t: _order_key(decisions, t), reverse=True):
            source = self._sources[trial]
            if source is None:
                continue
            before = trial.config
            super()._checkpoint_or_exploit(trial, tune_controller, [source], [trial])
            d = decisions[trial.config["member"]["worker"]]
            if trial.config is before:
                d.source = d.source_score = None  # Ray had no checkpoint to copy: no exploit
            else:
                d.new_hparams = dict(trial.config["member"]["hp"])
        self.history.append(record)
        self._round = None
        if self.on_generation is not None:
            self.on_generation(record)

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict, dict]:
        """Source's hyperparameters, perturbed; the exploiting trial keeps its worker id."""
        source = self._configs.get(trial_to_clone, trial_to_clone.config)["member"]
        new_hp = perturb(source["hp"], self.space, self.rng)
        return member_config(trial.config["member"]["worker"], new_hp), {}


def _order_key(decisions: dict[int, Decision], trial: Trial) -> float:
    score = decisions[trial.config["member"]["worker"]].score
    return math.inf if not math.isfinite(score) else score
