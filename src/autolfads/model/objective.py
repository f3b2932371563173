"""The LFADS training objective (a beta-weighted negative ELBO plus weight decay):

    loss = loss_scale * ( recon + w_kl(epoch) * (kl_ic_scale * KL_ic + kl_co_scale * KL_co)
                                + w_l2(epoch) * L2 )

    recon  = mean over trials, bins and neurons of -log p(x | theta)    (CD / SV masks applied)
    KL_ic  = mean over trials of KL(q(z0|x) || p(z0))
    KL_co  = mean over trials of sum_t KL(q(u_t|x) || p(u_t|u_{t-1}))
    L2     = (l2_gen_scale * |U_gen|^2 + l2_con_scale * |U_con|^2) / (2 * #recurrent weights)

w_kl and w_l2 ramp linearly from 0 to 1 (training/loop.py) so the model first learns to reconstruct.

How the terms are normalised, for moving hyperparameters between implementations (T bins,
N neurons per trial):
- recon is a mean per entry (trial x bin x neuron), KL_ic a sum over latent dimensions and KL_co a
  sum over bins and input dimensions, both averaged over trials. With kl_*_scale = 1/(T*N) the loss
  is the negative ELBO per entry; smaller scales (1e-7 .. 1e-5 are typical) weaken the prior.
- L2 is per recurrent weight: 0.5 * scale * |U|^2 summed, divided by the number of weights.
- lfads-torch with `recon_reduce_mean: True` (its published configs) normalises exactly this way
  and has the same loss_scale (1e4): its kl_*_scale, l2_*_scale and loss_scale carry over as they
  are. It also has L2 on the encoders' recurrent weights (l2_ic_enc_scale, l2_ci_enc_scale; 0 in
  its published configs), which we leave out.
- The original TensorFlow LFADS sums the reconstruction cost over bins and neurons (a mean over
  trials) and uses no loss_scale: its KL and L2 weights are T*N times ours, so divide them by T*N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autolfads.model.lfads import LFADS, LFADSOutput


@dataclass(frozen=True)
class BatchShare:
    """The part of a batch's costs that one shard of the batch carries (training/parallel.py runs
    a batch as shards in threads): each cost of the batch is the sum over its shards of the
    shard's cost times its share."""

    trials: float = 1.0  # of the trials: KL_ic and KL_co are means over trials
    seen: float = 1.0  # of the entries recon averages over (those SV does not hold out)
    held_out: float = 1.0  # of the entries SV holds out, which sv_recon averages over
    l2: bool = True  # L2 is a cost of the weights, not a mean over trials: one shard carries it


WHOLE_BATCH = BatchShare()


@dataclass
class Costs:
    recon: torch.Tensor  # scalar, differentiable (CD: gradient only through dropped entries)
    kl_ic: torch.Tensor
    kl_co: torch.Tensor
    l2: torch.Tensor
    sv_recon: torch.Tensor | None = None  # cost on the held-out sample-validation entries

    def part(self, share: BatchShare) -> Costs:
        """This shard's part of its batch's costs: summed over the shards, the batch's costs.
        total_loss is linear in the costs, so the parts' losses sum to the batch's loss too."""
        if share == WHOLE_BATCH:
            return self
        return Costs(
            recon=share.seen * self.recon,
            kl_ic=share.trials * self.kl_ic,
            kl_co=share.trials * self.kl_co,
            l2=self.l2 if share.l2 else self.l2.new_zeros(()),
            sv_recon=None if self.sv_recon is None else share.held_out * self.sv_recon,
        )


@dataclass
class LossWeights:
    """The scales and ramp factors of the loss terms (module docstring); the Trainer makes them
    from its TrainConfig for each epoch."""

    kl_ic_scale: float
    kl_co_scale: float
    l2_gen_scale: float
    l2_con_scale: float
    kl_ramp: float = 1.0
    l2_ramp: float = 1.0
    loss_scale: float = 1.0


def compute_costs(
    model: LFADS,
    out: LFADSOutput,
    counts: torch.Tensor,
    weights: LossWeights,
    cd_grad_mask: torch.Tensor | None = None,
    sv_held_out: torch.Tensor | None = None,
    data_term: torch.Tensor | None = None,
) -> Costs:
    """The cost terms of one batch. counts: the data the cost compares with (spike counts or a
    continuous signal); cd_grad_mask: coordinated dropout's gradient mask; sv_held_out: the
    sample-validation entries (True = held out); data_term: model.obs.data_term(counts), if the
    caller keeps it (Poisson: log counts!)."""
    sv_recon = None
    if sv_held_out is None:
        recon, _ = model.obs.cost(counts, out.obs_params, None, cd_grad_mask, data_term)
    else:
        seen = (~sv_held_out).to(counts.dtype)
        weight = seen / seen.sum().clamp_min(1.0)
        recon, nll = model.obs.cost(counts, out.obs_params, weight, cd_grad_mask, data_term)
        held = sv_held_out.to(nll.dtype)
        sv_recon = (nll * held).sum() / held.sum().clamp_min(1.0)

    kl_ic = model.ic_prior.kl(out.ic_mean, out.ic_logvar).mean()
    if model.use_con:
        kl_co = model.co_prior.kl(out.inferred_inputs, out.co_mean, out.co_logvar).mean()
    else:
        kl_co = torch.zeros((), device=counts.device)

    gen_sq, con_sq, n_rec = model.recurrent_l2()
    l2 = weights.l2_gen_scale * gen_sq
    if con_sq is not None:
        l2 = l2 + weights.l2_con_scale * con_sq
    l2 = l2 / (2.0 * n_rec)
    return Costs(recon, kl_ic, kl_co, l2, sv_recon)


def total_loss(c: Costs, w: LossWeights) -> torch.Tensor:
    """The loss of the module docstring, for a batch or (Costs.part) a shard of one."""
    kl = w.kl_ic_scale * c.kl_ic + w.kl_co_scale * c.kl_co
    return w.loss_scale * (c.recon + w.kl_ramp * kl + w.l2_ramp * c.l2)
