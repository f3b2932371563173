"""The default split of a dataset's trials into train, valid and test (data.split)."""

from __future__ import annotations

import numpy as np

from autolfads.config import AUTO_TEST_MIN_TRIALS, DataConfig
from autolfads.data.validate import MIN_TRIALS
from autolfads.errors import UserInputError


def split_trials(n_trials: int, cfg: DataConfig | None = None, min_kept: int = MIN_TRIALS
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based (train_inds, valid_inds, test_inds), each sorted (test may be empty).

    every_nth: trials valid_every-1, 2*valid_every-1, ... (every 5th, as the tutorial) are valid;
    test: trials 0, test_every, 2*test_every, ... that are not valid.
    random: a permutation seeded by split_seed; round(valid_fraction * n) trials, at least 1, are
    valid, the next round(test_fraction * n) test.
    Test set by default (test_every / test_fraction None): every 10th trial (10%) when there are
    at least AUTO_TEST_MIN_TRIALS trials, none otherwise. A test set must leave `min_kept` trials
    to train and validate on (0: the caller counts what it makes of them, as segments.py does).
    """
    cfg = cfg or DataConfig()
    all_inds = np.arange(n_trials)
    auto = n_trials >= AUTO_TEST_MIN_TRIALS
    if cfg.split == "every_nth":
        if cfg.valid_every > n_trials:
            raise UserInputError(
                f"data.valid_every={cfg.valid_every} is larger than the {n_trials} trials, leaving "
                "no validation trials; use a smaller value"
            )
        valid = all_inds[cfg.valid_every - 1 :: cfg.valid_every]
        every = (10 if auto else 0) if cfg.test_every is None else cfg.test_every
        test = np.setdiff1d(all_inds[::every], valid) if every else all_inds[:0]
    else:
        n_valid = min(max(1, round(cfg.valid_fraction * n_trials)), n_trials - 1)
        fraction = (0.1 if auto else 0.0) if cfg.test_fraction is None else cfg.test_fraction
        n_test = min(round(fraction * n_trials), n_trials - n_valid - 1)
        perm = np.random.default_rng(cfg.split_seed).permutation(n_trials)
        valid = np.sort(perm[:n_valid])
        test = np.sort(perm[n_valid : n_valid + n_test])
    train = np.setdiff1d(all_inds, np.concatenate([valid, test]))
    if len(train) == 0:
        raise UserInputError(f"data split: no training trials left among {n_trials}; use a "
                             "smaller data.test_every/test_fraction or valid_every/fraction")
    if len(test) and len(train) + len(valid) < min_kept:  # as a file's test_inds would be
        raise UserInputError(f"data split: {len(test)} test trials leave {len(train) + len(valid)}"
                             f" of {n_trials} for training and validation; LFADS needs at least "
                             f"{MIN_TRIALS}: use a larger data.test_every or a smaller "
                             "data.test_fraction")
    return train.astype(np.int64), valid.astype(np.int64), test.astype(np.int64)


def short_test_set(n_trials: int, cfg: DataConfig, n_test: int, unit: str = "trials") -> str:
    """A sentence when a random split gave fewer test trials than data.test_fraction asked for
    (rounding on few trials, or room kept for validation and training); else "". unit: what
    the split shares out (a recording's blocks of one segment)."""
    if cfg.split != "random" or not cfg.test_fraction:
        return ""
    asked = cfg.test_fraction * n_trials
    if n_test >= round(asked):
        if n_test:
            return ""
        return (f"data.test_fraction={cfg.test_fraction:g} of {n_trials} {unit} is {asked:.2g} "
                f"{unit}, which rounds to none: there is no test set")
    return (f"data.test_fraction={cfg.test_fraction:g} asks for {round(asked)} test {unit} of "
            f"{n_trials}; {n_test} fit beside the validation {unit} and at least one for "
            "training")


# Settings of the other split: set, they would be silently ignored.
_OTHER = {"every_nth": ("valid_fraction", "test_fraction"), "random": ("valid_every", "test_every")}
_INSTEAD = {"valid_fraction": "valid_every", "test_fraction": "test_every",
            "valid_every": "valid_fraction", "test_every": "test_fraction"}


def unused_split_settings(cfg: DataConfig) -> str:
    """A sentence when settings of the other data.split were given (they do nothing); else ""."""
    # (a run's config.yaml sets every key: only values other than the defaults were given)
    unused = [k for k in _OTHER[cfg.split]
              if getattr(cfg, k) not in (None, DataConfig.model_fields[k].default)]
    if not unused:
        return ""
    other = "random" if cfg.split == "every_nth" else "every_nth"
    verb = "applies" if len(unused) == 1 else "apply"
    return (f"data.{', data.'.join(unused)} {verb} to data.split={other}, not {cfg.split}: "
            f"ignored; use data.{', data.'.join(_INSTEAD[k] for k in unused)}, or "
            f"--set data.split={other}")
