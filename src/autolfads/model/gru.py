"""GRU recurrences with hand-written backward passes.

Autograd records ~25 small ops per GRU step and replays them one by one in the backward pass;
at LFADS sizes (B ~ 200, H ~ 64) each op takes microseconds of bookkeeping next to a few of
arithmetic. Here every step is one matmul and five elementwise ops written into preallocated
buffers, the backward pass walks the steps with ~10 ops each (the cell and the time loops are in
loops.py, compiled with TorchScript), and the weight gradients are left to a few large matmuls
per chunk of steps.

The equations are those of layers.ClippedGRUCell (the cuDNN form of the GRU):

    r = sigmoid(a_r),  z = sigmoid(a_z),  n = tanh(x_n + r * h_n),  h' = n + z * (h - n),
    [a_r, a_z] = W_rz x + b_irz + U_rz h + b_hrz,   x_n = W_n x + b_in,   h_n = U_n h + b_hn.

Gate buffer (4H columns per step, one layout for the forward and the backward pass):

    forward   P = [a_r, a_z, h_n, 2 x_n]  ->  (in place)  [r, z, h_n, n]
    backward  d = [d a_r, d a_z, d h_n, d x_n]

The input projection fills all four blocks in one matmul with the weight [W_r; W_z; 0; 2 W_n]
and bias [b_ir + b_hr, b_iz + b_hz, b_hn, 2 b_in]; the recurrent matmul then adds U h into the
first 3H columns in place. The hidden-state gradient of a step is d[:, :3H] @ U and the input
gate gradients are d[:, :2H], d[:, 3H:]. tanh(a) is computed as 2 sigmoid(2 a) - 1 (the factor
2 is folded into the x_n column and the value=2 of addcmul): the same function, and torch's CPU
sigmoid is several times faster than its tanh.

Time is processed in chunks of ~2048 rows (steps x batch): each chunk's gate buffer is a
separate tensor, so no buffer of the size of the whole sequence is allocated and freed per call
(those are mmapped by malloc and cost a page fault per 4 KiB on every use), and the backward
pass's gradient buffer is one chunk, reused, and warm in cache for the weight-gradient matmuls.

For a step with incoming gradient dh',
    dn = dh' (1 - z),   d x_n = dn (1 - n^2),   dz = dh' (h - n),   dr = d x_n h_n,
    d h_n = d x_n r,    dh = dh' z + [dr r(1-r), dz z(1-z), d h_n] U.
"""

from __future__ import annotations

import math

import torch

from autolfads.model import loops

CHUNK_ROWS = 2048  # steps x batch rows per chunk of the time loop


def chunks(T: int, B: int) -> list[tuple[int, int]]:
    """[(t0, t1), ...]: T steps in near-equal chunks of about CHUNK_ROWS rows."""
    n = max(1, min(T, math.ceil(T * B / CHUNK_ROWS)))
    k = math.ceil(T / n)
    return [(t0, min(T, t0 + k)) for t0 in range(0, T, k)]


def input_weight4(w: torch.Tensor, H: int) -> torch.Tensor:
    """Input weights (..., 3H, D) -> (..., 4H, D) in gate-buffer rows [W_r; W_z; 0; 2 W_n]."""
    zeros = w.new_zeros(*w.shape[:-2], H, w.shape[-1])
    return torch.cat([w[..., : 2 * H, :], zeros, 2.0 * w[..., 2 * H :, :]], dim=-2)


def input_bias4(b_ih: torch.Tensor, b_hh: torch.Tensor, H: int) -> torch.Tensor:
    """(..., 3H) biases -> (..., 4H) gate-buffer bias [b_ir + b_hr, b_iz + b_hz, b_hn, 2 b_in]."""
    return torch.cat([b_ih[..., : 2 * H] + b_hh[..., : 2 * H], b_hh[..., 2 * H :],
                      2.0 * b_ih[..., 2 * H :]], dim=-1)


def grad_weight4(w: torch.Tensor, H: int) -> torch.Tensor:
    """Input weights (..., 3H, D) -> (..., 4H, D) rows [W_r; W_z; 0; W_n]: d @ this is the
    gradient of the input of a step from its gate gradients d."""
    zeros = w.new_zeros(*w.shape[:-2], H, w.shape[-1])
    return torch.cat([w[..., : 2 * H, :], zeros, w[..., 2 * H :, :]], dim=-2)


def rows3(g4: torch.Tensor, H: int) -> torch.Tensor:
    """(..., 4H, D) gradient in gate-buffer rows -> (..., 3H, D) input-weight gradient rows."""
    return torch.cat([g4[..., : 2 * H, :], g4[..., 3 * H :, :]], dim=-2)


def bias_grads(colsum: torch.Tensor, H: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column sums (..., 4H) of the gate gradients -> (d b_ih, d b_hh)."""
    d_ih = torch.cat([colsum[..., : 2 * H], colsum[..., 3 * H :]], dim=-1)
    return d_ih, colsum[..., : 3 * H]


class GRUStack(torch.autograd.Function):
    """G independent GRUs of one size run in lockstep, so one bmm per step serves all of them.

    x (G, T, B, N), w_ih (G, 3H, N), b_ih (G, 3H), w_hh (G, 3H, H), b_hh (G, 3H), h0 (G, B, H)
    -> (last states (G, B, H), then per GRU its states after each step (T, B, H)).
    No clipping (these are the encoders).
    """

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, w_hh, b_hh, h0):
        G, T, B, N = x.shape
        H = w_hh.shape[-1]
        xs = x.reshape(G, T * B, N)
        w4 = input_weight4(w_ih, H).transpose(1, 2)  # (G, N, 4H)
        b4 = input_bias4(b_ih, b_hh, H).unsqueeze(1)  # (G, 1, 4H)
        u = w_hh.transpose(1, 2)  # (G, H, 3H)
        keep = any(ctx.needs_input_grad)
        neg1 = x.new_full((), -1.0)
        hs = x.new_empty(G, T + 1, B, H)
        hs[:, 0] = h0
        bufs, scratch = [], None
        for t0, t1 in chunks(T, B):
            c = t1 - t0
            if keep or scratch is None or scratch.shape[1] != c * B:
                scratch = x.new_empty(G, c * B, 4 * H)
            P = torch.baddbmm(b4, xs[:, t0 * B : t1 * B], w4, out=scratch).view(G, c, B, 4 * H)
            loops.stack_forward(P, hs, u, t0, neg1, H)
            if keep:
                bufs.append(P)
        if keep:
            ctx.save_for_backward(xs, w_ih, w_hh)
            ctx.bufs = (hs, bufs)
        # Unused outputs get no gradient (not zeros of the whole sequence): the IC encoders
        # only pass on their last state, the CI encoders their whole sequence.
        ctx.set_materialize_grads(False)
        return (hs[:, T], *(hs[g, 1:] for g in range(G)))

    @staticmethod
    def backward(ctx, grad_last, *grad_seqs):
        xs, w_ih, w_hh = ctx.saved_tensors
        hs, bufs = ctx.bufs
        del ctx.bufs
        G, T1, B, H = hs.shape
        T = T1 - 1
        N = xs.shape[-1]
        need = ctx.needs_input_grad
        spans = chunks(T, B)
        k = max(t1 - t0 for t0, t1 in spans)
        dbuf = hs.new_empty(G, k, B, 4 * H)
        tmp = hs.new_empty(G, B, H)
        dh = hs.new_zeros(G, B, H) if grad_last is None else grad_last.clone()
        seq_idx = [g for g, s in enumerate(grad_seqs) if s is not None]
        seq_grads = [grad_seqs[g] for g in seq_idx]
        dw_hh = hs.new_zeros(G, 3 * H, H)
        dw4t = hs.new_zeros(G, N, 4 * H)  # transposed: MKL is much faster with N on the left
        colsum = hs.new_zeros(G, 4 * H)
        dx = hs.new_empty(G, T, B, N) if need[0] else None
        w4g = grad_weight4(w_ih, H) if need[0] else None
        for (t0, t1), P in zip(reversed(spans), reversed(bufs), strict=True):
            c = t1 - t0
            d = dbuf if c == k else hs.new_empty(G, c, B, 4 * H)
            dh = loops.stack_backward(dh, P, hs, d, tmp, w_hh, t0, seq_idx, seq_grads, H)
            rows = d.reshape(G, c * B, 4 * H)
            dw_hh.baddbmm_(rows[..., : 3 * H].transpose(1, 2),
                           hs[:, t0:t1].reshape(G, c * B, H))
            dw4t.baddbmm_(xs[:, t0 * B : t1 * B].transpose(1, 2), rows)
            colsum += rows.sum(1)
            if dx is not None:
                dx[:, t0:t1] = torch.bmm(rows, w4g).view(G, c, B, N)
        db_ih, db_hh = bias_grads(colsum, H)
        return (dx, rows3(dw4t.transpose(1, 2), H) if need[1] else None, db_ih if need[2] else None,
                dw_hh if need[3] else None, db_hh if need[4] else None, dh)


def bidirectional(grus, h0s, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Run bidirectional nn.GRU modules (one layer, same input x (B, T, N), same hidden size)
    as one GRUStack. h0s: (2, 1, H) initial states. Returns, per module, the forward states
    (T, B, H), the backward direction's states in its own (reversed) time order, and the final
    states (B, H) of both directions."""
    E = len(grus)
    x_tb = x.transpose(0, 1)
    xx = torch.stack([x_tb] * E + [x_tb.flip(0)] * E)
    fwd, rev = "_l0", "_l0_reverse"

    def param(name: str) -> torch.Tensor:
        return torch.stack([getattr(g, name + s) for s in (fwd, rev) for g in grus])

    h0 = torch.stack([h[d] for d in (0, 1) for h in h0s]).expand(-1, x.shape[0], -1)
    last, *seqs = GRUStack.apply(xx, param("weight_ih"), param("bias_ih"), param("weight_hh"),
                                 param("bias_hh"), h0)
    return [(seqs[e], seqs[E + e], last[e], last[E + e]) for e in range(E)]
