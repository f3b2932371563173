"""When an AutoLFADS run ends (DESIGN.md §5), as plain functions of the best score per generation.

After every generation g the population's best score (lowest smoothed validation reconstruction
cost; NaN workers ignored) is recorded, and the run stops when

    (best before the last `window` generations - best now) / |best before| < min_improvement,

i.e. the last `window` generations together improved the best score by less than 0.05%
(default), or when g reaches the maximum number of generations.

No Ray here: the running scheduler asks this rule through its Ray adapter (pbt/stopper.py), and
`autolfads status` and `--resume` replay it on the logged scores without starting Ray.
"""

from __future__ import annotations

import math


def _running(bests: list[float]) -> list[float]:
    # A generation whose every worker diverged has no best: it counts as no progress at all.
    return [b if math.isfinite(b) else math.inf for b in bests]


def improvement(bests: list[float], window: int) -> float | None:
    """Relative improvement of the running best over the last `window` generations, or None
    while there is nothing to measure against (too few generations, or none trained before)."""
    b = _running(bests)
    if len(b) <= window or not math.isfinite(before := min(b[:-window])):
        return None
    return (before - min(b)) / max(abs(before), 1e-12)


def improvement_stop(bests: list[float], window: int, min_improvement: float) -> bool:
    """True when the running best of `bests` (one per generation) improved by less than
    `min_improvement` (relative) over the last `window` generations."""
    b = _running(bests)
    if len(b) <= window:
        return False
    if not math.isfinite(min(b[:-window])):
        return not math.isfinite(min(b))  # nothing has ever trained: stop rather than burn compute
    return improvement(bests, window) < min_improvement  # type: ignore[operator]


def stop_reason(bests: list[float], max_generations: int, window: int,
                min_improvement: float) -> str | None:
    """Why a run whose best score per generation is `bests` stops after its last one, or None."""
    if improvement_stop(bests, window, min_improvement):
        return (f"best score improved by less than {100 * min_improvement:.3g}% over the last "
                f"{window} generations")
    if len(bests) >= max_generations:
        return f"reached the maximum of {max_generations} generations"
    return None


def stopped_at(bests: list[float], max_generations: int, window: int,
               min_improvement: float) -> str | None:
    """The reason the rule gave at the first generation where it stopped, or None if it never
    did (a live run replayed under its logged settings)."""
    for n in range(1, len(bests) + 1):
        reason = stop_reason(bests[:n], max_generations, window, min_improvement)
        if reason is not None:
            return reason
    return None
