"""The Neural Latents Benchmark's tensor .h5 files, as nlb_tools writes them
(make_train_input_tensors, make_eval_input_tensors): trials x time x neurons arrays named
{train,eval}_spikes_{heldin,heldout}, the forward-prediction bins {train,eval}_spikes_*_forward,
and decode targets {train,eval}_behavior.

They become one dataset: held-in neurons first, then held-out ones (data.heldout_neurons = the
latter), the forward bins appended in time (data.forward_bins); settings the user gives win.
The train trials split into train/valid by data.split. Eval trials that carry everything the
train trials carry (held-out neurons, forward bins) are the test trials; eval trials without
them (NLB's hidden test phase) cannot be scored here and are left out, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from autolfads.config import DataConfig
from autolfads.data.validate import as_numeric, check_3d
from autolfads.errors import UserInputError
from autolfads.rundir.layout import INTERNAL_LAYOUT


def is_nlb(names: list[str]) -> bool:
    return "train_spikes_heldin" in names and "train_data" not in names


@dataclass
class NLBTensors:
    data: np.ndarray  # (trials, T + forward, held-in + held-out neurons): train trials, then eval
    n_train: int
    n_eval: int  # eval trials kept (the test trials); 0 when there are none to score
    cfg: DataConfig  # with the file's held-out neurons and forward bins, unless the user set them
    behavior: np.ndarray | None = None  # (trials, T, V) over the observed bins
    warnings: list[str] = field(default_factory=list)


def read_nlb(label: str, vals: dict[str, np.ndarray], cfg: DataConfig) -> NLBTensors:
    train, fwd, n_heldout = _stage(label, vals, "train", None)
    if train is None:  # is_nlb said train_spikes_heldin is there
        raise AssertionError("no train_spikes_heldin")
    warnings: list[str] = []
    parts, n_eval = [train], 0
    if "eval_spikes_heldin" in vals:
        ev, _, _ = _stage(label, vals, "eval", (train.shape, fwd, n_heldout))
        if ev is None:
            if n_heldout and "eval_spikes_heldout" not in vals:
                lacks = "held-out neurons (NLB's hidden test phase)"
            else:  # nlb_tools writes them to eval_target.h5, in a group per dataset
                lacks = ("forward bins (eval_spikes_*_forward, which nlb_tools writes to "
                         "eval_target.h5's group: copy them to this file's top level)")
            warnings.append(f"{label}: the eval trials have no {lacks}, so they cannot be "
                            "scored here and are left out; the test trials come from the train "
                            "trials")
        else:
            parts.append(ev)
            n_eval = len(ev)
    update: dict[str, object] = {}
    if n_heldout and cfg.heldout_neurons is None and cfg.heldout_fraction == 0:
        n_in = train.shape[2] - n_heldout
        update["heldout_neurons"] = list(range(n_in, train.shape[2]))
    if fwd and cfg.forward_bins == 0:
        update["forward_bins"] = fwd
    behavior = _behavior(label, vals, n_eval, train.shape[1] - fwd, warnings)
    if behavior is not None and cfg.forward_bins not in (0, fwd):
        warnings.append(f"{label}: behaviour not used for decoding: it covers the file's "
                        f"{train.shape[1] - fwd} observed bins, and data.forward_bins="
                        f"{cfg.forward_bins} differs from the file's {fwd}")
        behavior = None
    return NLBTensors(np.concatenate(parts), len(train), n_eval, cfg.model_copy(update=update),
                      behavior, warnings)


def _stage(label: str, vals: dict[str, np.ndarray], stage: str,
           like: tuple[tuple[int, ...], int, int] | None) -> tuple[np.ndarray | None, int, int]:
    """One stage's trials x (time + forward) x (held-in + held-out) array, its forward bins and
    held-out neurons. `like` (eval): the train stage's shape, forward bins and held-out count,
    which the eval stage must match; None when it lacks a part the train stage has."""

    def get(key: str) -> np.ndarray | None:
        if key not in vals:
            return None
        a = as_numeric(vals[key], f"{label}: dataset '{key}'")
        check_3d(a, f"{label}: dataset '{key}'", INTERNAL_LAYOUT)
        return a

    heldin = get(f"{stage}_spikes_heldin")
    heldout = get(f"{stage}_spikes_heldout")
    fwd_in = get(f"{stage}_spikes_heldin_forward")
    fwd_out = get(f"{stage}_spikes_heldout_forward")
    if like is not None:
        (_, t_all, n_all), fwd_bins, n_held = like
        if (n_held and heldout is None) or (fwd_bins and fwd_in is None):
            return None, 0, 0
        if not n_held:
            heldout, fwd_out = None, None
        if not fwd_bins:
            fwd_in, fwd_out = None, None
    n, t, _ = heldin.shape
    blocks = [heldin] + ([heldout] if heldout is not None else [])
    for key, a in zip(("heldout", "heldin_forward", "heldout_forward"), (heldout, fwd_in, fwd_out),
                      strict=True):
        if a is not None and len(a) != n:
            raise UserInputError(f"{label}: {stage}_spikes_{key} has {len(a)} trials but "
                                 f"{stage}_spikes_heldin has {n}; they must be the same trials")
    if heldout is not None and heldout.shape[1] != t:
        raise UserInputError(f"{label}: {stage}_spikes_heldout has {heldout.shape[1]} bins but "
                             f"{stage}_spikes_heldin has {t}")
    x = np.concatenate(blocks, axis=2)
    fwd = 0
    if fwd_in is not None:
        if heldout is not None and fwd_out is None:
            raise UserInputError(f"{label}: has {stage}_spikes_heldin_forward but no "
                                 f"{stage}_spikes_heldout_forward; give both or neither")
        fwd_blocks = [fwd_in] + ([fwd_out] if heldout is not None else [])
        widths = [b.shape[2] for b in blocks]
        f = np.concatenate(fwd_blocks, axis=2) if len({b.shape[1] for b in fwd_blocks}) == 1 \
            else None
        if f is None or [b.shape[2] for b in fwd_blocks] != widths:
            raise UserInputError(f"{label}: {stage}'s forward arrays do not match its spikes "
                                 "(same neurons, one number of forward bins)")
        x = np.concatenate([x, f], axis=1)
        fwd = f.shape[1]
    if like is not None and x.shape[1:] != like[0][1:]:
        raise UserInputError(f"{label}: the eval trials are {x.shape[1:]} (bins x neurons) but "
                             f"the train trials {like[0][1:]}; they must match")
    return x, fwd, 0 if heldout is None else heldout.shape[2]


def _behavior(label: str, vals: dict[str, np.ndarray], n_eval: int, t_obs: int,
              warnings: list[str]) -> np.ndarray | None:
    """Decode targets for the kept trials over the observed bins, or None (with a warning when
    the file has some that cannot be used)."""
    if "train_behavior" not in vals:
        return None
    stages = ("train", "eval") if n_eval else ("train",)
    arrs = [np.asarray(vals.get(f"{s}_behavior"), dtype=np.float64)
            if f"{s}_behavior" in vals else None for s in stages]
    why = None
    if any(a is None for a in arrs):
        why = "there is none for the eval trials"
    elif any(a.ndim != 3 or a.shape[1] != t_obs for a in arrs):
        why = f"it is not trials x {t_obs} bins x variables (per-trial values are not decoded)"
    elif not all(np.isfinite(a).all() for a in arrs):
        why = "it has NaN entries (NLB masks some trials' behaviour)"
    if why is not None:
        warnings.append(f"{label}: behaviour not used for decoding: {why}")
        return None
    return np.concatenate(arrs).astype(np.float32)
