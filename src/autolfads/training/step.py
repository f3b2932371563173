"""One training batch in shards: the loss, its gradients and the cost terms.

loss_and_grads is the training step's forward and backward pass (the Trainer adds gradient
clipping and Adam). A batch runs as the shards of parallel.Shards.split: one shard, the whole
batch, unless there are several threads and enough trials. Every shard goes the same way:
forward pass on its trials with the batch's random draws, its part of the batch's costs
(objective.BatchShare), the loss of objective.total_loss on that part; the shards' terms and
gradients add up to the whole batch's.
"""

from __future__ import annotations

import torch

from autolfads.model import LFADS
from autolfads.model.noise import Noise
from autolfads.model.objective import (
    WHOLE_BATCH,
    BatchShare,
    Costs,
    LossWeights,
    compute_costs,
    total_loss,
)
from autolfads.training.parallel import Shards

# What loss_and_grads returns, in this order: the batch's loss and its cost terms.
TERMS = ("loss", "recon", "kl_ic", "kl_co", "l2", "sv")


def loss_and_grads(model: LFADS, x_in: torch.Tensor, target: torch.Tensor, w: LossWeights,
                   shards: Shards, cd_mask: torch.Tensor | None = None,
                   sv: torch.Tensor | None = None, ext: torch.Tensor | None = None,
                   data_term: torch.Tensor | None = None) -> torch.Tensor:
    """Forward and backward pass of one training batch: fills the parameters' .grad and
    returns the batch's detached TERMS (loss, recon, kl_ic, kl_co, l2, sv_recon) as one tensor.

    x_in: encoder input (after CD / SV hiding); target: the data the cost compares with;
    data_term: model.obs.data_term(target) (Poisson: log target!), if the caller keeps it. The
    batch runs as the shards of shards.split (one, unless `shards` has several threads and the
    batch is large enough); the result is that of the whole batch.
    """
    rows = x_in.shape[0]
    parts = shards.split(rows)
    shares = batch_shares(parts, rows, sv)
    nz = model.draw_noise(x_in, sample=True, map_fn=shards.map)  # one draw for the whole batch
    whole = len(parts) == 1
    params = [] if whole else [p for p in model.parameters() if p.requires_grad]

    def run(i: int):
        c = shard_costs(model, nz, w, parts[i], x_in, target, ext, cd_mask, sv, data_term)
        c = c.part(shares[i])
        loss = total_loss(c, w)
        grads = None
        if whole:  # autograd fills .grad itself, laid out as each parameter
            loss.backward()
        else:  # threads adding into .grad would sum in a varying order
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        sv_cost = c.recon.new_zeros(()) if c.sv_recon is None else c.sv_recon
        return grads, torch.stack([loss, c.recon, c.kl_ic, c.kl_co, c.l2, sv_cost]).detach()

    results = shards.map(run, range(len(parts)))
    if not whole:
        _add_grads(params, [grads for grads, _ in results])
    terms = results[0][1]
    for _, t in results[1:]:
        terms = terms + t
    return terms


def batch_shares(parts: list[slice], rows: int, sv: torch.Tensor | None) -> list[BatchShare]:
    """Each shard's share of the costs of its batch of `rows` trials (sv: the batch's
    sample-validation mask, True = held out)."""
    if len(parts) == 1:
        return [WHOLE_BATCH]
    trials = [(s.stop - s.start) / rows for s in parts]
    if sv is None:
        seen, held = trials, [0.0] * len(parts)
    else:  # recon averages over the entries SV does not hold out, sv_recon over the others
        n_seen = torch.stack([(~sv[s]).sum() for s in parts]).double()
        n_held = torch.stack([sv[s].sum() for s in parts]).double()
        seen = (n_seen / n_seen.sum().clamp_min(1.0)).tolist()
        held = (n_held / n_held.sum().clamp_min(1.0)).tolist()
    return [BatchShare(trials=t, seen=a, held_out=b, l2=i == 0)
            for i, (t, a, b) in enumerate(zip(trials, seen, held, strict=True))]


def shard_costs(model: LFADS, nz: Noise, w: LossWeights, rows: slice, x_in: torch.Tensor,
                target: torch.Tensor, ext: torch.Tensor | None = None,
                cd_mask: torch.Tensor | None = None, sv: torch.Tensor | None = None,
                data_term: torch.Tensor | None = None) -> Costs:
    """Forward pass and costs of the trials `rows` of a batch, with the batch's draws `nz`."""
    whole = rows.start == 0 and rows.stop == x_in.shape[0]  # as is: slicing takes Python time

    def cut(a: torch.Tensor | None) -> torch.Tensor | None:
        return a if a is None or whole else a[rows]

    out = model(cut(x_in), cut(ext), noise=nz if whole else nz.select(rows))
    return compute_costs(model, out, cut(target), w, cut(cd_mask), cut(sv), cut(data_term))


def _add_grads(params: list[torch.Tensor], shard_grads: list[tuple]) -> None:
    """Add the shards' gradients to .grad: summed in shard order (the same sum every run), into
    a tensor laid out as the parameter, as backward() leaves .grad. autograd.grad may return a
    transposed gradient, and fused Adam reads .grad in the parameter's memory order."""
    for j, p in enumerate(params):
        total = None
        for grads in shard_grads:
            if grads[j] is None:
                continue
            if total is None:
                total = torch.empty_like(p).copy_(grads[j])
            else:
                total += grads[j]
        if total is not None:
            if p.grad is None:
                p.grad = total
            else:
                p.grad += total
