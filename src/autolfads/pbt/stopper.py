"""When an AutoLFADS run ends (DESIGN.md §5).

After every generation g the population's best score (lowest smoothed validation reconstruction
cost; NaN workers ignored) is recorded, and the run stops when

    (best before the last `window` generations - best now) / |best before| < min_improvement,

i.e. the last `window` generations together improved the best score by less than 0.05%
(default), or when g reaches the maximum number of generations. The scheduler consults this
stopper when a generation is complete, so the final generation is logged like every other one
(without exploits); Ray then stops every trial through `stop_all`.
"""

from __future__ import annotations

import math

from ray.tune.stopper import Stopper


def improvement_stop(bests: list[float], window: int, min_improvement: float) -> bool:
    """True when the running best of `bests` (one per generation) improved by less than
    `min_improvement` (relative) over the last `window` generations."""
    finite = [b if math.isfinite(b) else math.inf for b in bests]
    if len(finite) <= window:
        return False
    before = min(finite[:-window])
    now = min(finite)
    if not math.isfinite(before):
        return not math.isfinite(now)  # nothing has ever trained: stop rather than burn compute
    return (before - now) / max(abs(before), 1e-12) < min_improvement


class PBTStopper(Stopper):
    def __init__(self, max_generations: int, window: int = 4, min_improvement: float = 5e-4):
        self.max_generations = max_generations
        self.window = window
        self.min_improvement = min_improvement
        self.best_by_generation: list[float] = []
        self.stopped_reason: str | None = None

    def record(self, generation: int, best_score: float) -> str | None:
        """Record generation `generation`'s best score (1-based, in order); return why the run
        stops now, or None to go on."""
        if generation != len(self.best_by_generation) + 1:
            raise ValueError(f"generation {generation} recorded after "
                             f"{len(self.best_by_generation)}")
        self.best_by_generation.append(best_score)
        if improvement_stop(self.best_by_generation, self.window, self.min_improvement):
            self.stopped_reason = (f"best score improved by less than "
                                   f"{100 * self.min_improvement:.3g}% over the last "
                                   f"{self.window} generations")
        elif generation >= self.max_generations:
            self.stopped_reason = f"reached the maximum of {self.max_generations} generations"
        return self.stopped_reason

    def progress(self) -> tuple[float | None, int]:
        """(relative improvement over the current window or None if too early, generations)."""
        b = [x if math.isfinite(x) else math.inf for x in self.best_by_generation]
        if len(b) <= self.window or not math.isfinite(min(b[: -self.window])):
            return None, len(b)
        before = min(b[: -self.window])
        return (before - min(b)) / max(abs(before), 1e-12), len(b)

    # Ray's Stopper interface: trials are never stopped one by one, only all together.
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.stopped_reason is not None
