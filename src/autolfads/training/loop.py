"""Training one LFADS model: Adam with gradient clipping, KL/L2 ramps, a smoothed validation cost
(the PBT score), early stopping and exact checkpoints.

The Trainer holds everything a checkpoint must restore (weights, optimizer moments, epoch,
smoothed cost, RNG state), so "train k epochs, save, load, continue" equals training straight
through with the same seed. PBT (pbt/) drives the same object one generation at a time and
changes hyperparameters between generations with `set_hparams`.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from autolfads.config import TUNABLE, Config
from autolfads.data.dataset import Dataset
from autolfads.errors import UserInputError
from autolfads.model import LFADS
from autolfads.model.augment import (
    coordinated_dropout,
    hide_entries,
    mask_digest,
    sample_validation_mask,
)
from autolfads.model.objective import Costs, LossWeights
from autolfads.model.observations import build as build_observation
from autolfads.model.observations.choose import resolve as resolve_observation
from autolfads.rundir.location import atomic_write
from autolfads.training.parallel import Shards
from autolfads.training.process import resolve_device
from autolfads.training.step import TERMS, batch_shares, loss_and_grads, shard_costs

SV_MASK_SEED = 7919


def adam(params, lr: float, eps: float, device: torch.device) -> torch.optim.Adam:
    """Adam; its fused form where torch has one (CPU, CUDA): the same update in one kernel for
    all parameters instead of several per parameter, which dominate at LFADS sizes."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=device.type in ("cpu", "cuda"))


def ramp(epoch: int, start: int, length: int) -> float:
    """Linear 0 -> 1 over `length` epochs from `start` (1 from the start when length is 0)."""
    if length <= 0:
        return 1.0 if epoch >= start else 0.0
    return float(min(1.0, max(0.0, (epoch - start + 1) / length)))


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_recon: float
    valid_recon: float
    smoothed_valid_recon: float
    kl_ic: float
    kl_co: float
    l2: float
    train_sv_recon: float | None = None
    valid_sv_recon: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class SplitCosts:
    """What Trainer.evaluate finds on a whole split (posterior means, no dropout, no CD)."""

    recon: float  # reconstruction cost of the entries the model sees: the validation score
    sv_recon: float | None = None  # of the entries SV holds out; None without SV


LONG_RUN_S = 600  # a fit that will take longer says so after its first epoch


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    smoothed: float = math.nan  # smoothed validation reconstruction cost
    best: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


class Trainer:
    def __init__(self, cfg: Config, data: Dataset, shard_threads: int = 1):
        """shard_threads: the threads each batch runs in (parallel.Shards). Entry points get it
        from process.setup_process(cfg.train), which also seeds the global RNGs that the model's
        initial weights and the training draws come from."""
        self.cfg = cfg.model_copy(deep=True)
        self.data = data
        self.device = resolve_device(cfg.train.device)
        self.shards = Shards(shard_threads)

        def to(a: np.ndarray | None) -> torch.Tensor | None:
            if a is None:
                return None
            return torch.as_tensor(a, dtype=torch.float32, device=self.device)

        self.train_x, self.valid_x = to(data.train_data), to(data.valid_data)
        self.train_ext, self.valid_ext = to(data.train_ext_input), to(data.valid_ext_input)
        # Test trials are never trained on or scored during training; only sampled at the end.
        self.test_x, self.test_ext = to(data.test_data), to(data.test_ext_input)
        sv = cfg.model.sv_rate
        # One SV mask per dataset: not tied to train.seed, which differs between PBT workers, so
        # every worker (and the weights an exploit copies) holds out the very same entries.
        seed = SV_MASK_SEED + cfg.data.split_seed
        self.train_sv = _sv_mask(self.train_x, sv, seed)
        self.valid_sv = _sv_mask(self.valid_x, sv, seed + 1)
        self.sv_digest = mask_digest(self.train_sv, self.valid_sv)

        # The observation model. The entry points settle and check it before training
        # (inputs.choose_observation); only a Trainer made directly on `auto` chooses here.
        name = cfg.model.observation
        if name == "auto":
            name, _ = resolve_observation(name, data.all_data(), data.source or "data")
            self.cfg.model.observation = name
        obs = build_observation(name, self.train_x, self.valid_x)
        # Held-out neurons / forward bins (NLB): the encoders read the held-in neurons over the
        # observed bins; the model reconstructs every neuron over every bin.
        self.holds_out = data.holds_out
        self.t_obs = data.n_observed_bins
        self.heldin = torch.as_tensor(data.heldin_neurons, device=self.device)
        self.model = LFADS(cfg.model, len(data.heldin_neurons), data.ext_input_dim,
                           n_outputs=data.n_neurons,
                           recon_seq_len=data.n_time if self.holds_out else None,
                           observation=obs).to(self.device)
        self.model.init_readout_bias(self.train_x)
        # What the encoders read (continuous data rescaled per channel; counts as they are), and
        # the cost's data-only term (Poisson: log x!), slow to compute on every batch.
        self.train_in = self.seen(obs.encoder_input(self.train_x))
        self.valid_in = self.seen(obs.encoder_input(self.valid_x))
        self.test_in = None if self.test_x is None else self.seen(obs.encoder_input(self.test_x))
        self.train_dt, self.valid_dt = obs.data_term(self.train_x), obs.data_term(self.valid_x)
        self.optimizer = adam(self.model.parameters(), cfg.train.lr, cfg.train.adam_eps,
                              self.device)
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None

    # -- what the encoders see -----------------------------------------------------------------

    def seen(self, a: torch.Tensor | None) -> torch.Tensor | None:
        """The part of a (trials x bins x neurons) array the encoders see: held-in neurons over
        the observed bins (all of it unless the data holds some out)."""
        if a is None or not self.holds_out:
            return a
        return a[:, : self.t_obs].index_select(2, self.heldin).contiguous()

    def full_grad_mask(self, cd_mask: torch.Tensor | None, target: torch.Tensor
                       ) -> torch.Tensor | None:
        """Coordinated dropout's gradient mask (input shape) on the target's entries: held-out
        entries, which the encoders never see, pass their gradient like dropped ones."""
        if cd_mask is None or not self.holds_out:
            return cd_mask
        full = torch.ones_like(target)
        full[:, : self.t_obs, self.heldin] = cd_mask
        return full

    # -- hyperparameters -----------------------------------------------------------------------

    def hparams(self) -> dict[str, float]:
        return {k: getattr(getattr(self.cfg, sec), k) for k, sec in TUNABLE.items()}

    def set_hparams(self, values: dict[str, float]) -> None:
        """Apply new hyperparameters (after a restore too: the lr wins over the optimizer's)."""
        for key, value in values.items():
            if key not in TUNABLE:
                raise KeyError(f"not a tunable hyperparameter: {key}")
            setattr(getattr(self.cfg, TUNABLE[key]), key, float(value))
        self.model.dropout_rate = self.cfg.model.dropout_rate
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.train.lr

    def loss_weights(self, epoch: int) -> LossWeights:
        t = self.cfg.train
        return LossWeights(
            kl_ic_scale=t.kl_ic_scale,
            kl_co_scale=t.kl_co_scale,
            l2_gen_scale=t.l2_gen_scale,
            l2_con_scale=t.l2_con_scale,
            kl_ramp=ramp(epoch, t.kl_start_epoch, t.kl_increase_epochs),
            l2_ramp=ramp(epoch, t.l2_start_epoch, t.l2_increase_epochs),
            loss_scale=t.loss_scale,
        )

    # -- one epoch -----------------------------------------------------------------------------

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        t = self.cfg.train
        w = self.loss_weights(self.state.epoch)
        n = self.train_x.shape[0]
        order = torch.randperm(n, device=self.device)
        sums = torch.zeros(len(TERMS), device=self.device)
        for idx in order.split(t.batch_size):
            x, x_enc = self.train_x[idx], self.train_in[idx]
            dt = None if self.train_dt is None else self.train_dt[idx]
            sv = None if self.train_sv is None else self.train_sv[idx]
            ext = None if self.train_ext is None else self.train_ext[idx]
            x_in, cd_mask = coordinated_dropout(
                hide_entries(x_enc, self.seen(sv), self.cfg.model.sv_rate), self.cfg.model.cd_rate)
            cd_mask = self.full_grad_mask(cd_mask, x)
            self.optimizer.zero_grad(set_to_none=True)
            terms = loss_and_grads(self.model, x_in, x, w, self.shards, cd_mask, sv, ext,
                                   data_term=dt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.optimizer.step()
            # Accumulated on the device: one host sync per epoch, not per batch.
            sums += terms * (len(idx) / n)
        return dict(zip(TERMS, sums.tolist(), strict=True))

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, ext: torch.Tensor | None, sv: torch.Tensor | None,
                 data_term: torch.Tensor | None = None, x_enc: torch.Tensor | None = None
                 ) -> SplitCosts:
        """Reconstruction costs of a whole split with posterior means (no dropout, no CD);
        x_enc: what the encoders read (default model.obs.encoder_input(x))."""
        x_enc = self.seen(self.model.obs.encoder_input(x)) if x_enc is None else x_enc
        self.model.eval()
        w = self.loss_weights(self.state.epoch)
        recon, sv_recon, n = 0.0, 0.0, x.shape[0]
        for idx in torch.arange(n, device=self.device).split(max(self.cfg.train.batch_size, 256)):
            xb = x[idx]
            svb = None if sv is None else sv[idx]
            lfb = None if data_term is None else data_term[idx]
            eb = None if ext is None else ext[idx]
            x_in = hide_entries(x_enc[idx], self.seen(svb), self.cfg.model.sv_rate)
            nz = self.model.draw_noise(x_in, sample=False)  # eval mode: nothing to draw
            parts = self.shards.split(len(idx))

            def run(rows: slice, xb=xb, svb=svb, lfb=lfb, eb=eb, x_in=x_in, nz=nz) -> Costs:
                return shard_costs(self.model, nz, w, rows, x_in, xb, eb, None, svb, lfb)

            costs = self.shards.map(run, parts)
            # Weighted in Python floats, not by Costs.part on float32 tensors: the score keeps
            # double precision.
            shares = batch_shares(parts, len(idx), svb)
            chunk = sum(s.seen * float(c.recon) for c, s in zip(costs, shares, strict=True))
            recon += chunk * len(idx) / n
            if svb is not None:
                chunk = sum(s.held_out * float(c.sv_recon)
                            for c, s in zip(costs, shares, strict=True))
                sv_recon += chunk * len(idx) / n
        return SplitCosts(recon, sv_recon if sv is not None else None)

    def run_epoch(self) -> EpochStats:
        start = time.perf_counter()
        train = self.train_epoch()
        valid_costs = self.evaluate(self.valid_x, self.valid_ext, self.valid_sv, self.valid_dt,
                                    self.valid_in)
        valid = valid_costs.recon
        s = self.state
        a = self.cfg.train.smoothing
        s.smoothed = valid if math.isnan(s.smoothed) else a * s.smoothed + (1 - a) * valid
        if s.smoothed < s.best:
            s.best, s.best_epoch, s.bad_epochs = s.smoothed, s.epoch, 0
            self.best_weights = copy.deepcopy(self.model.state_dict())
        elif s.epoch + 1 >= self.ramps_end():
            # Patience runs only once the KL and L2 weights are fully on: the cost still moves
            # with the ramps before that, and stopping there would skip the regularised model.
            s.bad_epochs += 1
        stats = EpochStats(
            epoch=s.epoch, train_loss=train["loss"], train_recon=train["recon"],
            valid_recon=valid, smoothed_valid_recon=s.smoothed, kl_ic=train["kl_ic"],
            kl_co=train["kl_co"], l2=train["l2"],
            train_sv_recon=train["sv"] if self.train_sv is not None else None,
            valid_sv_recon=valid_costs.sv_recon, seconds=time.perf_counter() - start,
        )
        s.history.append(stats.__dict__.copy())
        s.epoch += 1
        return stats

    def ramps_end(self) -> int:
        t = self.cfg.train
        return max(t.kl_start_epoch + t.kl_increase_epochs, t.l2_start_epoch + t.l2_increase_epochs)

    def should_stop(self) -> bool:
        s = self.state
        return s.bad_epochs >= self.cfg.train.patience or not math.isfinite(s.smoothed)

    def fit(self, epochs: int | None = None, log: Callable[[str], None] | None = None,
            early_stop: bool = True,
            on_epoch: Callable[[EpochStats], None] | None = None) -> TrainState:
        """Train up to `epochs` more epochs (default: until cfg.train.epochs are done), calling
        `on_epoch` after each."""
        target = self.cfg.train.epochs if epochs is None else self.state.epoch + epochs
        t0, begin = time.perf_counter(), self.state.epoch
        if early_stop and self.state.epoch > 0 and self.should_stop():
            return self.state  # a resumed training that had already stopped
        while self.state.epoch < target:
            st = self.run_epoch()
            if on_epoch is not None:
                on_epoch(st)
            if log is not None:
                elapsed = time.perf_counter() - t0
                log(format_epoch(st, target, elapsed))
                left = elapsed * (target - self.state.epoch)
                if self.state.epoch == begin + 1 and left > LONG_RUN_S:  # after the first
                    log(f"at {elapsed:.1f} s per epoch the other {target - self.state.epoch} "
                        f"epochs take up to {left / 60:.0f} min (early stopping often ends "
                        "sooner)")
            if early_stop and self.should_stop():
                if log is not None:
                    why = (f"smoothed validation cost has not improved for "
                           f"{self.state.bad_epochs} epochs" if math.isfinite(self.state.smoothed)
                           else "the validation cost is not finite")
                    log(f"stopping early at epoch {st.epoch + 1}: {why}")
                break
        return self.state

    def use_best_weights(self) -> None:
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        # On the CPU: a GPU worker's file (best_model/ too) loads on a laptop without a GPU,
        # also with a plain torch.load; load_checkpoint puts everything back on this device.
        return _on_cpu({
            "format": 1,
            "model": self.model.state_dict(),
            "best_model": self.best_weights,
            "optimizer": self.optimizer.state_dict(),
            "state": self.state.__dict__,
            "hparams": self.hparams(),
            "rng": rng,
            "sv_mask": self.sv_digest,
        })

    def save(self, path: str | Path, **extra) -> Path:
        """Write the checkpoint atomically (temp file + rename): never half a file on a crash."""
        buf = io.BytesIO()  # torch.save to a file turns a full disk into an opaque RuntimeError
        torch.save({**self.checkpoint(), **extra}, buf)
        return atomic_write(path, lambda tmp: tmp.write_bytes(buf.getbuffer()))

    def load(self, path: str | Path, restore_rng: bool = True) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=True)
        self.load_checkpoint(ck, restore_rng)

    def load_checkpoint(self, ck: dict, restore_rng: bool = True) -> None:
        if ck.get("sv_mask", self.sv_digest) != self.sv_digest:  # older checkpoints: no key
            raise UserInputError(
                "checkpoint: trained with other sample-validation entries than this run's "
                "(model.sv_rate, data.split_seed or the data changed); its validation scores "
                "would not compare. Keep those settings, or start a new run")
        self.model.load_state_dict(ck["model"])
        self.best_weights = ck.get("best_model")
        self.optimizer.load_state_dict(ck["optimizer"])
        self.state = TrainState(**ck["state"])
        self.set_hparams(ck["hparams"])  # the checkpoint's hparams, incl. its lr
        if restore_rng:
            torch.set_rng_state(ck["rng"]["torch"].cpu())
            if "cuda" in ck["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(ck["rng"]["cuda"].cpu(), self.device)


def _on_cpu(obj):
    """A copy of a checkpoint's nested dicts/lists with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def _sv_mask(x: torch.Tensor, rate: float, seed: int) -> torch.Tensor | None:
    mask = sample_validation_mask(tuple(x.shape), rate, seed)
    return None if mask is None else mask.to(x.device)


def format_epoch(st: EpochStats, total: int, elapsed: float) -> str:
    sv = f" sv {st.valid_sv_recon:.4f}" if st.valid_sv_recon is not None else ""
    return (
        f"epoch {st.epoch + 1:>4}/{total}  loss {st.train_loss:9.2f}  recon train "
        f"{st.train_recon:.4f} valid {st.valid_recon:.4f} (smoothed {st.smoothed_valid_recon:.4f})"
        f"{sv}  kl ic {st.kl_ic:.1f} co {st.kl_co:.1f}  {st.seconds:.1f}s/epoch  {elapsed:.0f}s"
    )
