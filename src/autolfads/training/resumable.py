"""A single training (`autolfads train`) that survives an interruption: its whole state (model,
optimizer, early-stopping state, random streams) is kept in the run directory as it trains, and
`--resume` continues it from there exactly as if it had not stopped."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autolfads.config import TUNABLE, Config, load_config
from autolfads.errors import UserInputError
from autolfads.rundir import layout
from autolfads.rundir.layout import is_uri
from autolfads.training.loop import Trainer, TrainState

# The state is written at most this often (and after the last epoch): a few MB each time, which
# is ~1% of a CPU epoch but can be a tenth of a short GPU epoch.
KEEP_EVERY_S = 30.0


def interrupted_training(out: str | Path | None) -> Path:
    """The run directory that `train --resume` continues: a training stopped before its outputs
    were written."""
    if out is None or is_uri(str(out)):
        raise UserInputError("--resume: give the local --out of the interrupted training")
    out_dir = Path(out)
    if (out_dir / layout.TRAIN_STATE).is_file():
        return out_dir
    if (out_dir / layout.PBT).exists():
        raise UserInputError(f"--resume: {out} holds an `autolfads run` (PBT); continue it with "
                             f"autolfads run --out {out} --resume")
    if (out_dir / layout.METRICS).exists():
        raise UserInputError(f"--resume: {out} holds a finished training (metrics.json); train "
                             "for longer with a new --out and --epochs")
    if (out_dir / layout.CONFIG).exists():
        raise UserInputError(f"--resume: {out} was stopped before its first epoch ended; start "
                             "it again, without --resume")
    raise UserInputError(f"--resume: {out} holds no interrupted `autolfads train`")


def load_state(trainer: Trainer, out_dir: Path, cfg: Config) -> None:
    """Put the kept state into `trainer` (built from `cfg`: the run's config with this command's
    overrides). Hyperparameters given now win over the kept ones; a changed model is refused."""
    saved = load_config(out_dir / layout.CONFIG)
    changed = [f"model.{k}={getattr(saved.model, k)!r} (now {v!r})"
               for k, v in cfg.model.model_dump().items()
               if k not in TUNABLE and getattr(saved.model, k) != v]
    if changed:
        raise UserInputError(f"--resume: the interrupted training's model had "
                             f"{', '.join(changed)}; resume without changing model settings, or "
                             "start a new --out")
    path = out_dir / layout.TRAIN_STATE
    try:
        trainer.load(path)
    except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as e:
        if "size mismatch" in str(e) or "in loading state_dict" in str(e):
            raise UserInputError("--resume: the kept model does not fit this run's settings "
                                 "(model or data.* changed); resume without changing them, or "
                                 "start a new --out") from None
        raise UserInputError(f"--resume: {path} cannot be read ({type(e).__name__}); it may be "
                             "damaged: start the training again with --force") from None
    # Equal to the kept values unless this command's --set changed them.
    trainer.set_hparams({k: getattr(getattr(cfg, sec), k) for k, sec in TUNABLE.items()})
    done = trainer.state.epoch
    if done > cfg.train.epochs:
        raise UserInputError(f"--epochs {cfg.train.epochs}: {done} epochs are already done; give "
                             "more, or leave --epochs out")


@dataclass
class Keeper:
    """Keeps `trainer`'s state in out_dir/TRAIN_STATE while it trains (nothing when out_dir is
    None), and says how to continue when it is interrupted."""

    trainer: Trainer
    out_dir: Path | None
    say: Callable[[str], None]
    on_keep: Callable[[], None] = lambda: None  # e.g. write the epochs so far (train_log.csv)
    kept_epoch: int = -1  # the epoch count of the state on disk (-1: none kept)
    kept_at: float = -float("inf")
    broken: bool = False  # a write failed: training goes on, not resumable

    def fit(self) -> TrainState:
        if self.trainer.state.epoch > 0:  # resumed: its state is the one on disk
            self.kept_epoch, self.kept_at = self.trainer.state.epoch, time.monotonic()
        state = self.trainer.fit(log=self.say, on_epoch=lambda _st: self.keep())
        if self.kept_epoch != state.epoch:  # an interruption from here on resumes at the end
            self.keep(now=True)
        return state

    def keep(self, now: bool = False) -> None:
        if self.out_dir is None or self.broken:
            return
        if not now and time.monotonic() - self.kept_at < KEEP_EVERY_S and self.kept_epoch > 0:
            return
        try:
            self.trainer.save(self.out_dir / layout.TRAIN_STATE)
            self.on_keep()
        except UserInputError as e:  # a full disk, a quota: the training itself can go on
            self.broken = True
            then = (f"a resume would start again after epoch {self.kept_epoch}"
                    if self.kept_epoch > 0 else "if this training stops it cannot be resumed")
            self.say(f"warning: the training state cannot be kept ({e}); {then}")
            return
        self.kept_epoch, self.kept_at = self.trainer.state.epoch, time.monotonic()

    def interrupted(self) -> None:
        """Say how to continue (called on Ctrl-C / SIGTERM, before the interruption goes on)."""
        if self.out_dir is not None and self.kept_epoch > 0:
            self.say(f"interrupted; the training state after epoch {self.kept_epoch} is kept: "
                     f"continue with: autolfads train --out {self.out_dir} --resume")

    def done(self) -> None:
        """The outputs are written (or the training failed): nothing is left to resume."""
        if self.out_dir is not None:
            (self.out_dir / layout.TRAIN_STATE).unlink(missing_ok=True)
