"""The scheduler's record of each generation: what every worker scored and whom it copied.

Plain dataclasses (no Ray): the scheduler (pbt/scheduler.py) makes them, the log writer
(pbt_log.py) writes them, and the log reader gives them back to `status`, the report and --resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Decision:
    worker: int
    score: float
    hparams: dict[str, float]  # used during the generation that just ended
    source: int | None = None  # the worker copied, when exploited
    source_score: float | None = None
    new_hparams: dict[str, float] | None = None  # after explore, for the next generation

    @property
    def exploited(self) -> bool:
        return self.source is not None


@dataclass
class GenerationRecord:
    generation: int  # 1-based: generations completed
    decisions: list[Decision] = field(default_factory=list)

    def best(self) -> Decision:
        finite = [d for d in self.decisions if math.isfinite(d.score)]
        return min(finite or self.decisions, key=lambda d: d.score)


def best_score(scores: Iterable[float]) -> float:
    """A generation's best score, as the stop rule sees it: the lowest finite score (lower is
    better), or inf when every worker diverged (NaN)."""
    return min((s for s in scores if math.isfinite(s)), default=math.inf)
