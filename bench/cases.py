"""The two benchmark cases (issue 4), one training step as the Trainer takes it, and the FLOP
count of that step.

A training step is what training/loop.py does per batch: coordinated dropout on the input, a
sampled forward pass in train mode (dropout on), the costs, backward, gradient-norm clipping and
an Adam update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from autolfads.config import ModelConfig, TrainConfig
from autolfads.model import LFADS
from autolfads.model.augment import coordinated_dropout
from autolfads.model.objective import LossWeights, compute_costs, total_loss
from autolfads.model.observations import Observation, Poisson, log_factorial
from autolfads.training.loop import adam
from autolfads.training.parallel import Shards
from autolfads.training.step import loss_and_grads


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    t_enc: int  # bins the encoders read
    t_recon: int  # bins the generator runs and the cost covers
    n_in: int  # encoded neurons
    n_out: int  # reconstructed neurons
    model: dict  # ModelConfig fields


CASES = {
    "lorenz": Case("lorenz", batch=200, t_enc=50, t_recon=50, n_in=29, n_out=29, model=dict(
        ic_enc_dim=64, ci_enc_dim=64, con_dim=64, co_dim=4, ic_dim=64, gen_dim=64, fac_dim=40)),
    "mc_maze": Case("mc_maze", batch=256, t_enc=35, t_recon=45, n_in=137, n_out=182, model=dict(
        ic_enc_dim=64, ci_enc_dim=64, con_dim=64, co_dim=4, ic_dim=64, gen_dim=200,
        fac_dim=100)),
}


def sync(device: str) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously), so a timing covers it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_model(case: Case, device: str, seed: int = 0) -> LFADS:
    torch.manual_seed(seed)
    cfg = ModelConfig(**case.model)
    recon = case.t_recon if case.t_recon != case.t_enc else None
    return LFADS(cfg, case.n_in, n_outputs=case.n_out, recon_seq_len=recon).to(device)


def make_batch(case: Case, device: str, batch: int | None = None, seed: int = 1):
    """(encoder input counts (B, t_enc, n_in), target counts (B, t_recon, n_out), their log
    counts!, which the Trainer computes once per dataset)."""
    g = torch.Generator().manual_seed(seed)
    B = batch or case.batch
    counts = torch.poisson(torch.rand(B, case.t_recon, case.n_out, generator=g) * 2.0,
                           generator=g).to(device)
    return counts[:, : case.t_enc, : case.n_in].contiguous(), counts, log_factorial(counts)


def make_step(model: LFADS, case: Case, shards: Shards | None = None
              ) -> tuple[Callable, torch.optim.Adam]:
    """A function running one training step on (x, counts, data_term), as the Trainer does
    (training/step.py: loss_and_grads, then gradient clipping and Adam); returns the (device) loss.
    The model's `fused` switch chooses the fused recurrences or the plain form."""
    t = TrainConfig()
    opt = adam(model.parameters(), t.lr, t.adam_eps, next(model.parameters()).device)
    w = LossWeights(t.kl_ic_scale, t.kl_co_scale, t.l2_gen_scale, t.l2_con_scale, 0.5, 0.5,
                    t.loss_scale)
    cd_rate = model.cfg.cd_rate
    shards = shards or Shards(1)
    params = list(model.parameters())

    def step(x: torch.Tensor, counts: torch.Tensor, data_term: torch.Tensor) -> torch.Tensor:
        model.train()
        x_in, cd_mask = coordinated_dropout(x, cd_rate)
        cd_mask = _on_target(cd_mask, counts)
        opt.zero_grad(set_to_none=True)
        terms = loss_and_grads(model, x_in, counts, w, shards, cd_mask, data_term=data_term)
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        return terms[0]

    return step, opt


def _on_target(cd_mask: torch.Tensor | None, counts: torch.Tensor) -> torch.Tensor | None:
    """CD's gradient mask on the target's entries: the bins and neurons the encoders never see
    (the first t_enc bins and n_in neurons are seen) pass their gradient, as dropped ones do."""
    if cd_mask is None or cd_mask.shape == counts.shape:
        return cd_mask
    full = torch.ones_like(counts)
    full[:, : cd_mask.shape[1], : cd_mask.shape[2]] = cd_mask
    return full


def make_plain_step(model: LFADS, case: Case) -> Callable:
    """The same training step written the plain PyTorch way, the reference the fast path is
    compared with in the same run: the model's plain form (nn.GRU encoders, one Python step per
    bin), the Poisson cost composed under autograd, one backward on the whole batch (no
    shards; torch's own intra-op threads), torch's default Adam, the same clipping."""
    model.fused = False
    model.obs = PlainPoisson()
    t = TrainConfig()
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, eps=t.adam_eps)
    w = LossWeights(t.kl_ic_scale, t.kl_co_scale, t.l2_gen_scale, t.l2_con_scale, 0.5, 0.5,
                    t.loss_scale)
    params = list(model.parameters())

    def step(x: torch.Tensor, counts: torch.Tensor, data_term: torch.Tensor) -> torch.Tensor:
        model.train()
        x_in, cd_mask = coordinated_dropout(x, model.cfg.cd_rate)
        cd_mask = _on_target(cd_mask, counts)
        opt.zero_grad(set_to_none=True)
        loss = total_loss(compute_costs(model, model(x_in), counts, w, cd_mask,
                                        data_term=data_term), w)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()
        return loss.detach()

    return step


class PlainPoisson(Poisson):
    """Poisson observations with the cost composed under autograd (Observation.cost), not the
    fused one."""

    cost = Observation.cost


def forward_flops(case: Case, batch: int | None = None) -> dict[str, float]:
    """Matmul FLOPs (2 m n k per product) of one forward pass, by part. Elementwise work (gate
    nonlinearities, masks, costs) is left out: it is O(B T H), not O(B T H^2)."""
    m = ModelConfig(**case.model)
    B = batch or case.batch
    Te, T = case.t_enc, case.t_recon
    H_ic, H_ci, C, K, G, F = m.ic_enc_dim, m.ci_enc_dim, m.con_dim, m.co_dim, m.gen_dim, m.fac_dim

    def mm(rows: int, k: int, n: int) -> float:
        return 2.0 * rows * k * n

    def gru(rows: int, n_in: int, h: int) -> float:  # input + recurrent gates of one GRU
        return mm(rows, n_in, 3 * h) + mm(rows, h, 3 * h)

    parts = {
        "ic_encoder": 2 * gru(B * Te, case.n_in, H_ic),
        "ic_posterior": mm(B, 2 * H_ic, 2 * m.ic_dim) + mm(B, m.ic_dim, G),
        "generator": gru(B * T, K, G),
        "factors": mm(B * T, G, F),
        "readout": mm(B * T, F, case.n_out),
    }
    if K:
        parts["ci_encoder"] = 2 * gru(B * Te, case.n_in, H_ci)
        # The encoded inputs c_t exist for the T_enc encoded bins only (zero after them).
        parts["controller"] = (mm(B * Te, 2 * H_ci, 3 * C) + gru(B * T, F, C)
                               + mm(B * T, C, 2 * K))
        parts["factors"] += mm(B, G, F)  # f_{-1}, the controller's first factor input
    return parts


def step_flops(case: Case, batch: int | None = None) -> float:
    """Matmul FLOPs a training step needs: the forward products, and in the backward pass the
    weight gradient of each and the input gradient of each whose input depends on parameters:
    every product but the encoders' projections of the data."""
    m = ModelConfig(**case.model)
    B = batch or case.batch
    data_proj = 2.0 * (2 * B * case.t_enc * case.n_in * 3 * m.ic_enc_dim)
    if m.co_dim:
        data_proj += 2.0 * (2 * B * case.t_enc * case.n_in * 3 * m.ci_enc_dim)
    return 3.0 * sum(forward_flops(case, batch).values()) - data_proj
