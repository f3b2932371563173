"""The time loops of the fused recurrences (gru.py, recurrence.py), compiled with TorchScript.

A step is a handful of small ops; run from Python, each op also pays the interpreter (and holds
the GIL, so the batch shards of training/parallel.py could not run in parallel). Compiled, a whole
chunk of steps runs in C++ without the GIL. The loops exist once as Python functions (EAGER) and,
where TorchScript works and AUTOLFADS_NO_SCRIPT=1 is not set, once compiled (SCRIPTED); with
train.native_cells the cell's elementwise operators are replaced by one compiled C++ kernel
each (native/, use_native). `active` is the set the recurrences call.

Buffers and equations: see gru.py (gate buffers [h_n, r, z, n] / [d h_n, d a_r, d a_z, d x_n])
and recurrence.py (controller / generator step). All functions write into preallocated tensors.
The decoder has one loop for the generator alone and one for controller + generator, so that
neither tests per step whether a controller exists.
"""

# No `from __future__ import annotations`: TorchScript cannot read string annotations inside a
# NamedTuple. It also reads typing's Optional/List, not `X | None`.
# ruff: noqa: UP006, UP035, UP045, SIM108
import os
import types
import warnings
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor


def cell_forward(P: Tensor, h: Tensor, h_out: Tensor, neg1: Tensor, H: int, clip: float
                 ) -> None:
    """One step on a gate buffer P = [h_n, a_r, a_z, 2 x_n] (U h already added), in place to
    [h_n, r, z, n]; writes the new state to h_out, clipped to [-clip, clip] (clip <= 0: not
    clipped; the encoders). neg1: a 0-dim tensor holding -1."""
    P.narrow(-1, H, 2 * H).sigmoid_()
    n = P.narrow(-1, 3 * H, H)
    torch.addcmul(n, P.narrow(-1, H, H), P.narrow(-1, 0, H), value=2.0, out=n)
    n.sigmoid_()
    torch.add(neg1, n, alpha=2.0, out=n)  # 2 sigmoid(2a) - 1 = tanh(a)
    torch.lerp(n, h, P.narrow(-1, 2 * H, H), out=h_out)
    if clip > 0:
        h_out.clamp_(-clip, clip)


def cell_backward(dh: Tensor, P: Tensor, h_prev: Tensor, d: Tensor, tmp: Tensor, H: int
                  ) -> Tensor:
    """Fill d (..., 4H) with the gate gradients [d h_n, d a_r, d a_z, d x_n] of one step from
    the step's forward buffer P = [h_n, r, z, n]; return dh' * z (the direct path to the
    previous state)."""
    hn = P.narrow(-1, 0, H)
    rz = P.narrow(-1, H, 2 * H)
    n = P.narrow(-1, 3 * H, H)
    hz = dh * rz.narrow(-1, H, H)
    torch.sub(dh, hz, out=tmp)  # dn
    d_xn = d.narrow(-1, 3 * H, H)
    torch.ops.aten.tanh_backward(tmp, n, grad_input=d_xn)
    torch.mul(d_xn, hn, out=d.narrow(-1, H, H))  # dr
    torch.sub(h_prev, n, out=tmp)
    torch.mul(dh, tmp, out=d.narrow(-1, 2 * H, H))  # dz
    d_rz = d.narrow(-1, H, 2 * H)
    torch.ops.aten.sigmoid_backward(d_rz, rz, grad_input=d_rz)
    torch.mul(d_xn, rz.narrow(-1, 0, H), out=d.narrow(-1, 0, H))  # d h_n
    return hz


# -- encoders: G GRUs in lockstep (gru.GRUStack) ------------------------------------------------

def stack_forward(P: Tensor, hs: Tensor, u: Tensor, t0: int, neg1: Tensor, H: int) -> None:
    """P (G, c, B, 4H) input-projected gate buffers of steps t0..t0+c-1; hs (G, T+1, B, H)."""
    for j in range(P.shape[1]):
        t = t0 + j
        Pj = P.select(1, j)
        h = hs.select(1, t)
        Pj.narrow(-1, 0, 3 * H).baddbmm_(h, u)
        cell_forward(Pj, h, hs.select(1, t + 1), neg1, H, 0.0)


def stack_backward(dh: Tensor, P: Tensor, hs: Tensor, d: Tensor, tmp: Tensor, u: Tensor,
                   t0: int, seq_idx: List[int], seq_grads: List[Tensor], H: int) -> Tensor:
    """Steps t0+c-1 .. t0 in reverse: fills d (G, c, B, 4H); returns the state gradient.
    u (G, 3H, H): recurrent weights in gate-buffer rows [U_n; U_r; U_z]."""
    for j in range(P.shape[1] - 1, -1, -1):
        t = t0 + j
        for k in range(len(seq_idx)):
            dh.select(0, seq_idx[k]).add_(seq_grads[k].select(0, t))
        dj = d.select(1, j)
        hz = cell_backward(dh, P.select(1, j), hs.select(1, t), dj, tmp, H)
        dh = torch.baddbmm(hz, dj.narrow(-1, 0, 3 * H), u)
    return dh


# -- controller + generator (recurrence.Decoder) -------------------------------------------------

class GenForward(NamedTuple):
    """The generator's tensors in the forward loop (T bins, B trials, G units, F factors)."""

    gs: Tensor  # (T + 1, B, G) states, gs[0] = g0
    gm: Tensor  # (T + 1, B, G) the states the factor readout sees (gs itself without dropout)
    fs: Tensor  # (T + 1, B, F) fs[0] = f_{-1}, fs[t + 1] = f_t
    gmask: Optional[Tensor]  # (T + 1, B, G) dropout on g before the readout
    w_hh: Tensor  # (G, 3G) recurrent weight for gate columns 0..3G (gru.hidden_weight), transposed
    w_fac: Tensor  # (G, F) W_fac, transposed


class ConForward(NamedTuple):
    """The controller's tensors in the forward loop; trials last where MKL is faster so."""

    hc: Tensor  # (T + 1, B, C) states, hc[0] = h^con_0
    fd: Tensor  # (T, B, F) f_{t-1} as the controller reads it (fs[:T] itself without dropout)
    cu: Tensor  # (T, 2K, B) per bin [mu; logvar / 2], then in place [mu; exp(logvar / 2)]
    us: Tensor  # (T, K, B) the u the generator gets (a view of cu's mu rows when u = mu)
    eps: Optional[Tensor]  # (T, K, B) standard normal draws; None when u = mu
    fmask: Optional[Tensor]  # (T, B, F) dropout on f_{t-1}
    w_f: Tensor  # (F, 3C) factor-input weight for gate columns C..4C (gru.input_weight), transposed
    w_hh: Tensor  # (C, 3C) recurrent weight for gate columns 0..3C, transposed
    w_co: Tensor  # (2K, C) W_co with the logvar rows halved
    b_co: Tensor  # (2K, 1) b_co with the logvar rows halved
    w_u: Tensor  # (K, 3G) the generator's u-input weight for gate columns G..4G, transposed


def gen_step(pg: Tensor, gs: Tensor, t: int, w_hh: Tensor, neg1: Tensor, clip: float) -> Tensor:
    """g_{t+1} = clip(GRU(., g_t)) on the step's gate buffer pg (inputs already in); writes and
    returns gs[t + 1]."""
    G = gs.shape[-1]
    g, g_new = gs.select(0, t), gs.select(0, t + 1)
    pg.narrow(-1, 0, 3 * G).addmm_(g, w_hh)
    cell_forward(pg, g, g_new, neg1, G, clip)
    return g_new


def generator_forward(pg: Tensor, t0: int, gs: Tensor, w_hh: Tensor, neg1: Tensor, clip: float
                      ) -> None:
    """Steps t0..t0+c-1 of the generator without a controller: pg (c, B, 4G) gate buffers with
    every input in. The factors feed nothing back; the caller reads them out afterwards."""
    for j in range(pg.shape[0]):
        gen_step(pg.select(0, j), gs, t0 + j, w_hh, neg1, clip)


def decoder_forward(pg: Tensor, pc: Tensor, t0: int, gen: GenForward, con: ConForward,
                    neg1: Tensor, clip: float) -> None:
    """Steps t0..t0+c-1 of controller + generator. pg (c, B, 4G) / pc (c, B, 4C): gate buffers
    with the inputs known in advance (ext_t, c_t and biases)."""
    gm, fs, gmask, w_fac = gen.gm, gen.fs, gen.gmask, gen.w_fac
    hc, fd, cu, us, eps, fmask = con.hc, con.fd, con.cu, con.us, con.eps, con.fmask
    C, K, G = hc.shape[-1], cu.shape[1] // 2, gen.gs.shape[-1]
    for j in range(pg.shape[0]):
        t = t0 + j
        pgj, pcj = pg.select(0, j), pc.select(0, j)
        if fmask is not None:
            torch.mul(fs.select(0, t), fmask.select(0, t), out=fd.select(0, t))
        pcj.narrow(-1, C, 3 * C).addmm_(fd.select(0, t), con.w_f)
        pcj.narrow(-1, 0, 3 * C).addmm_(hc.select(0, t), con.w_hh)
        h_new = hc.select(0, t + 1)
        cell_forward(pcj, hc.select(0, t), h_new, neg1, C, clip)
        cut = cu.select(0, t)  # (2K, B)
        torch.addmm(con.b_co, con.w_co, h_new.t(), out=cut)
        u = us.select(0, t)
        if eps is not None:
            std = cut.narrow(0, K, K).exp_()
            torch.addcmul(cut.narrow(0, 0, K), std, eps.select(0, t), out=u)
        pgj.narrow(-1, G, 3 * G).addmm_(u.t(), con.w_u)
        g_new = gen_step(pgj, gen.gs, t, gen.w_hh, neg1, clip)
        if gmask is not None:
            torch.mul(g_new, gmask.select(0, t + 1), out=gm.select(0, t + 1))
        torch.mm(gm.select(0, t + 1), w_fac, out=fs.select(0, t + 1))


class GenBackward(NamedTuple):
    gs: Tensor  # (T + 1, B, G) forward states
    dfs: Tensor  # (T + 1, B, F) gradient of fs (the factors' own; the feedback is added in)
    gmask: Optional[Tensor]  # (T + 1, B, G)
    tmp: Tensor  # (B, G) scratch
    w_hh: Tensor  # (3G, G) recurrent weight in gate-buffer rows (gru.hidden_weight)
    w_fac: Tensor  # (F, G)


class ConBackward(NamedTuple):
    hc: Tensor  # (T + 1, B, C) forward states
    dco: Tensor  # (T, B, 2K) gradient of [mu, logvar], updated in place
    se: Optional[Tensor]  # (T, K, B) exp(logvar / 2) * eps; None when u = mu
    d_u: Optional[Tensor]  # (T, B, K) gradient of the returned u
    fmask: Optional[Tensor]  # (T, B, F)
    tmp: Tensor  # (B, C) scratch
    w_hh: Tensor  # (3C, C) recurrent weight in gate-buffer rows
    w_f: Tensor  # (3C, F) factor-input weight
    w_co: Tensor  # (2K, C)
    w_u: Tensor  # (K, 3G) the generator's u-input weight, transposed


def gen_step_backward(dg: Tensor, pg: Tensor, d: Tensor, t: int, gen: GenBackward, clip: float
                      ) -> Tensor:
    """Back through step t of the generator: dg, the gradient of g_{t+1} -> that of g_t; fills
    the step's gate gradients d (B, 4G). The gradient of clip is zero where g was clipped."""
    G = gen.gs.shape[-1]
    dg = torch.ops.aten.hardtanh_backward(dg, gen.gs.select(0, t + 1), -clip, clip)
    hz = cell_backward(dg, pg, gen.gs.select(0, t), d, gen.tmp, G)
    return torch.addmm(hz, d.narrow(-1, 0, 3 * G), gen.w_hh)


def generator_backward(pg: Tensor, t0: int, dg: Tensor, dgc: Tensor, dgm: Tensor,
                       gen: GenBackward, clip: float) -> Tensor:
    """Steps t0+c-1 .. t0 of the generator alone in reverse: fills dgc (c, B, 4G); returns the
    gradient of g_{t0}. dgm (T, B, G): the gradient the readout gives each g_{t+1}."""
    for j in range(pg.shape[0] - 1, -1, -1):
        t = t0 + j
        dg = gen_step_backward(dg + dgm.select(0, t), pg.select(0, j), dgc.select(0, j), t, gen,
                               clip)
    return dg


def decoder_backward(pg: Tensor, pc: Tensor, t0: int, dg: Tensor, dhc: Tensor,
                     df_prev: Optional[Tensor], dgc: Tensor, dcc: Tensor, gen: GenBackward,
                     con: ConBackward, clip: float) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Steps t0+c-1 .. t0 of controller + generator in reverse: fills dgc (c, B, 4G) and dcc
    (c, B, 4C) with gate gradients; returns the gradients of g, h^con and f_{t0-1} before step
    t0. df_prev: the gradient of f_{t0+c-1} through the controller's input (None at the end)."""
    dfs, gmask, w_fac = gen.dfs, gen.gmask, gen.w_fac
    hc, dco, se, d_u, fmask = con.hc, con.dco, con.se, con.d_u, con.fmask
    C, K, G = hc.shape[-1], dco.shape[-1] // 2, gen.gs.shape[-1]
    for j in range(pg.shape[0] - 1, -1, -1):
        t = t0 + j
        dft = dfs.select(0, t + 1)
        if df_prev is not None:
            dft.add_(df_prev)
        dgm = torch.mm(dft, w_fac)
        if gmask is None:
            dg = dg + dgm
        else:
            dg = torch.addcmul(dg, dgm, gmask.select(0, t + 1))
        d = dgc.select(0, j)
        dg = gen_step_backward(dg, pg.select(0, j), d, t, gen, clip)
        # (K, 3G) @ (3G, B): MKL is fast with the narrow K on the left
        du = torch.mm(con.w_u, d.narrow(-1, G, 3 * G).t()).t()
        if d_u is not None:
            du = du + d_u.select(0, t)
        dco_t = dco.select(0, t)
        dco_t.narrow(-1, 0, K).add_(du)
        if se is not None:
            dco_t.narrow(-1, K, K).addcmul_(du, se.select(0, t).t(), value=0.5)
        dhc = torch.ops.aten.hardtanh_backward(torch.addmm(dhc, dco_t, con.w_co),
                                               hc.select(0, t + 1), -clip, clip)
        dc = dcc.select(0, j)
        hz = cell_backward(dhc, pc.select(0, j), hc.select(0, t), dc, con.tmp, C)
        dhc = torch.addmm(hz, dc.narrow(-1, 0, 3 * C), con.w_hh)
        df = torch.mm(dc.narrow(-1, C, 3 * C), con.w_f)
        if fmask is not None:
            df.mul_(fmask.select(0, t))
        df_prev = df
    return dg, dhc, df_prev


# -- the GRU cell as compiled kernels (native/), behind train.native_cells -----------------------

def native_cell_forward(P: Tensor, h: Tensor, h_out: Tensor, neg1: Tensor, H: int, clip: float
                        ) -> None:
    torch.ops.autolfads.gru_cell_forward(P, h, h_out, H, clip)


def native_cell_backward(dh: Tensor, P: Tensor, h_prev: Tensor, d: Tensor, tmp: Tensor, H: int
                         ) -> Tensor:
    return torch.ops.autolfads.gru_cell_backward(dh, P, h_prev, d, H)


# -- the one place that decides between compiled and Python loops --------------------------------

class Loops(NamedTuple):
    stack_forward: Callable
    stack_backward: Callable
    generator_forward: Callable
    generator_backward: Callable
    decoder_forward: Callable
    decoder_backward: Callable


EAGER = Loops(stack_forward, stack_backward, generator_forward, generator_backward,
              decoder_forward, decoder_backward)


def with_cells(forward: Callable, backward: Callable) -> Loops:
    """The same loops with another implementation of cell_forward / cell_backward: every
    function of this module is re-created over a copy of its namespace in which the two names
    mean the given ones (the loops call the cell through the module's globals)."""
    ns = dict(globals())
    for name, f in globals().items():
        if isinstance(f, types.FunctionType) and f.__module__ == __name__:
            ns[name] = types.FunctionType(f.__code__, ns, name, f.__defaults__)
    ns["cell_forward"], ns["cell_backward"] = forward, backward
    return Loops(*(ns[n] for n in Loops._fields))


def _scripted(eager: Loops) -> Optional[Loops]:
    if os.environ.get("AUTOLFADS_NO_SCRIPT", "") not in ("", "0"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Loops(*(torch.jit.script(f) for f in eager))
    except Exception:  # noqa: BLE001  (any failure: run the same functions as Python)
        return None


_native: List[Tuple[Optional[Loops], str]] = []  # the outcome of the first try, kept


def native_loops(say: Optional[Callable[[str], None]] = None) -> Tuple[Optional[Loops], str]:
    """The loops with the compiled cell (built on first use; `say` hears when a build starts),
    compiled with TorchScript where the others are; (None, why not) where the kernels cannot be
    built here. Tried once per process: a failing build is not repeated at every setup."""
    if not _native:
        _native.append(_build_native(say))
    return _native[0]


def _build_native(say: Optional[Callable[[str], None]]) -> Tuple[Optional[Loops], str]:
    from autolfads.model.fused import native

    why = native.load(say=say)
    if why is not None:
        return None, why
    eager = with_cells(native_cell_forward, native_cell_backward)
    scripted = _scripted(eager)
    if scripted is None and SCRIPTED is not None:  # as Python they would be slower
        return None, "TorchScript could not compile the loops with the native cells"
    return scripted or eager, ""


SCRIPTED = _scripted(EAGER)
# What the recurrences call (tests may swap in another set; use_native swaps in the native one).
active = SCRIPTED or EAGER


def use_default() -> None:
    """The recurrences without the native cells (a process's setup says which it wants)."""
    global active
    active = SCRIPTED or EAGER


def on(x: torch.Tensor) -> Loops:
    """The loops to run on x's device: the native cells are CPU kernels, so a model on a GPU
    runs the default loops even in a process that chose the native ones."""
    if x.device.type != "cpu" and _native and active is _native[0][0]:
        return SCRIPTED or EAGER
    return active


def use_native(say: Optional[Callable[[str], None]] = None) -> Optional[str]:
    """Make the recurrences use the compiled GRU cell in this process (train.native_cells);
    None when they do, else why they cannot (and nothing changes)."""
    global active
    impl, why = native_loops(say)
    if impl is None:
        return why
    active = impl
    return None
