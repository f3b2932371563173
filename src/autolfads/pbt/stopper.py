"""The stop rule (pbt/stop_rule.py) as a Ray Tune stopper.

The scheduler records each generation's best score here when the generation is complete, so the
final generation is logged like every other one (without exploits); Ray then stops every trial
through `stop_all`, which also ends a run that cannot go on at all (`abort`, e.g. a GPU worker on
a node without a usable GPU).

A resumed run replays its logged history (`replay`) without deciding on it again: whether the
run may continue from its last generation is `stop_reason` of that history, checked before Ray
starts (a finished run is reported, not restarted).
"""

from __future__ import annotations

from ray.tune.stopper import Stopper

from autolfads.pbt.stop_rule import improvement, stop_reason


class PBTStopper(Stopper):
    def __init__(self, max_generations: int, window: int = 4, min_improvement: float = 5e-4):
        self.max_generations = max_generations
        self.window = window
        self.min_improvement = min_improvement
        self.best_by_generation: list[float] = []
        self.stopped_reason: str | None = None
        self.aborted: str | None = None  # why the run cannot go on (an error, not a finish)

    def replay(self, bests: list[float]) -> None:
        """A resumed run's earlier generations: they count towards the rule from the next
        generation on, but were decided when they ran (a since relaxed rule does not stop now)."""
        if self.best_by_generation:
            raise ValueError("replay before the first generation only")
        self.best_by_generation = list(bests)

    def abort(self, reason: str) -> None:
        if self.aborted is None:  # the first cause is the one to report
            self.aborted = reason

    def record(self, generation: int, best_score: float) -> str | None:
        """Record generation `generation`'s best score (1-based, in order); return why the run
        stops now, or None to go on."""
        if generation != len(self.best_by_generation) + 1:
            raise ValueError(f"generation {generation} recorded after "
                             f"{len(self.best_by_generation)}")
        self.best_by_generation.append(best_score)
        reason = stop_reason(self.best_by_generation, self.max_generations, self.window,
                             self.min_improvement)
        if reason is not None:
            self.stopped_reason = reason
        return self.stopped_reason

    def progress(self) -> tuple[float | None, int]:
        """(relative improvement over the current window or None if too early, generations)."""
        return improvement(self.best_by_generation, self.window), len(self.best_by_generation)

    # Ray's Stopper interface: trials are never stopped one by one, only all together.
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.stopped_reason is not None or self.aborted is not None
