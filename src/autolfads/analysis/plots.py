"""The report's figures, drawn with matplotlib's Agg renderer.

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot: pyplot keeps
global state and picks a GUI backend, which would be wrong inside the runner (a Ray driver that
may run on a headless node) and not thread safe. Every function returns a Figure; `save_png`
writes it atomically so that a browser reloading a live report never sees half an image.

Rates are plotted in Hz when the bin width is known, else in spikes per bin (the outputs' unit).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from autolfads.data.segments import Stretch
from autolfads.rundir.location import atomic_write
from autolfads.rundir.pbt_log import HPLog
from autolfads.rundir.records import Decision

EXPLOIT_STYLE = {"ls": "--", "lw": 1.0, "alpha": 0.8}
MAX_LINES = 40  # single trials: beyond this many a plot is a blur
MAX_CONDITIONS = 100  # condition averages are smooth and distinct: more of them stay readable


def save_png(fig: Figure, path: Path, dpi: int = 90) -> Path:
    """Save as a 256-colour PNG: antialiased lines compress poorly in full colour, and the
    palette version looks the same at a third of the size (the report is ~0.3 MB, not ~0.8)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    return atomic_write(path, lambda tmp: small.save(tmp, format="PNG", optimize=True))


def _worker_colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def rate_units(bin_ms: float | None) -> tuple[float, str]:
    """(factor from spikes/bin, label) for plotting rates."""
    return (1000.0 / bin_ms, "Hz") if bin_ms else (1.0, "spikes/bin")


def _time_axis(n_time: int, bin_ms: float | None, first_bin: int = 0
               ) -> tuple[np.ndarray, str]:
    if bin_ms:
        return (first_bin + np.arange(n_time)) * bin_ms, "time (ms)"
    return first_bin + np.arange(n_time, dtype=float), "time (bins)"


def _title(ax, k: int, t: np.ndarray, stretch: Stretch | None) -> None:
    """A trial's column: its number; a stretch's: its bins (1-based)."""
    if stretch is None:
        ax.set_title(f"trial {k + 1}", fontsize=10)
    else:
        ax.set_title(f"bins {stretch.first + 1}-{stretch.end}", fontsize=10)


HELD_OUT_SHADES = {"valid": "0.86", "test": "#cde3f5"}  # validation grey, test light blue


def _shade(ax, t: np.ndarray, stretch: Stretch | None, edges: bool = False) -> None:
    """Behind a stretch's held-out segments, their split's shade; edges: only dashed lines at
    their ends (over an image, which would hide a shade)."""
    if stretch is None:
        return
    dt = float(t[1] - t[0]) if len(t) > 1 else 1.0
    for a, b, split in stretch.held_out:
        lo, hi = t[a] - dt / 2, t[b - 1] + dt / 2
        if edges:
            for x in (lo, hi):
                ax.axvline(x, color="white", lw=0.8, ls="--")
        else:
            ax.axvspan(lo, hi, color=HELD_OUT_SHADES.get(split, "0.86"), zorder=0, lw=0)


def population_evolution(log: HPLog, decisions: dict[tuple[int, int], Decision],
                         columns: Sequence[str], log_scale: dict[str, bool],
                         labels: dict[str, str] | None = None) -> Figure:
    """One panel per column (score or a hyperparameter): a line per worker across generations.

    An exploit at the end of generation g (worker w copies worker s) is drawn as a dashed segment
    from s's value at g to w's value at g + 1, ending in a triangle: the worker continued from
    another worker's weights and (perturbed) hyperparameters.
    """
    gens = np.asarray(log.generations, dtype=float)
    workers = log.workers
    colors = _worker_colors(len(workers))
    wi = {w: i for i, w in enumerate(workers)}
    gi = {int(g): i for i, g in enumerate(gens)}
    ncol = min(4, len(columns))
    nrow = math.ceil(len(columns) / ncol)
    # At least 8 inches wide: a single panel (the scores) needs room for its legend.
    fig = Figure(figsize=(max(3.6 * ncol, 8.0), (2.7 if ncol > 1 else 3.4) * nrow + 0.5),
                 layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, name in zip(axes, columns, strict=False):
        table = log.table(name)
        for j, w in enumerate(workers):
            # A worker's own line breaks where it exploited: its next generation did not continue
            # from its own state, and a solid line there would say that it did.
            xs, ys = [], []
            for i, g in enumerate(gens):
                xs.append(g)
                ys.append(table[i, j])
                d = decisions.get((int(g), w))
                if d is not None and d.exploited:
                    xs.append(np.nan)
                    ys.append(np.nan)
            ax.plot(xs, ys, "-o", color=colors[j], ms=3, lw=1.2, label=f"worker {w}")
        for (g, w), d in decisions.items():
            if not d.exploited or d.source not in wi or w not in wi or g + 1 not in gi:
                continue
            y0, y1 = table[gi[g], wi[d.source]], table[gi[g + 1], wi[w]]
            ax.plot([g, g + 1], [y0, y1], color=colors[wi[w]], **EXPLOIT_STYLE)
            ax.plot([g + 1], [y1], "v", color=colors[wi[w]], mec="black", ms=7)
        finite = table[np.isfinite(table)]
        if log_scale.get(name) and finite.size and (finite > 0).all():
            ax.set_yscale("log")
        ax.set_title((labels or {}).get(name, name), fontsize=10)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    if len(workers) <= 20:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="grey", marker="v", mec="black", **EXPLOIT_STYLE))
        names.append("exploit: copied another worker")
        fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 6),
                   fontsize=8, frameon=False)
    return fig


def training_curve(rows: list[dict[str, float]]) -> Figure:
    """A single model's costs per epoch (train-only runs have no population to show)."""
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    epochs = np.array([r.get("epoch", i) for i, r in enumerate(rows)], dtype=float) + 1
    for key, label in (("train_recon", "train recon"), ("valid_recon", "valid recon"),
                       ("smoothed_valid_recon", "smoothed valid recon (model selection)")):
        y = np.array([r.get(key, np.nan) for r in rows], dtype=float)
        if np.isfinite(y).any():
            ax.plot(epochs, y, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("reconstruction cost (nats/bin/neuron)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def example_trials(rates: np.ndarray, trials: Sequence[int], spikes: np.ndarray | None,
                   truth: np.ndarray | None, bin_ms: float | None,
                   stretches: Sequence[Stretch] | None = None) -> Figure:
    """Per trial: inferred rates as a neurons x time image with the spikes on top (a raster),
    and below it the three busiest neurons' inferred (solid) vs true (dashed) rates.
    stretches: the columns are stretches of one recording (one per entry of `trials`)."""
    scale, unit = rate_units(bin_ms)
    n = len(trials)
    fig = Figure(figsize=((6.0 if stretches else 3.4) * n + 0.8, 6.2), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False, sharex="col" if stretches else True)
    ref = truth if truth is not None else rates
    busiest = np.argsort(ref.mean(axis=(0, 1)))[::-1][:3]
    vmax = float(np.percentile(rates[list(trials)] * scale, 99)) or None
    image = None
    for c, k in enumerate(trials):
        top, bottom = axes[0, c], axes[1, c]
        stretch = stretches[c] if stretches else None
        t, t_label = _time_axis(rates.shape[1], bin_ms, stretch.first if stretch else 0)
        dt = float(t[1] - t[0]) if len(t) > 1 else 1.0
        # Pixels centred on their bin, neurons numbered from 1 as in the legend below.
        extent = (t[0] - dt / 2, t[-1] + dt / 2, rates.shape[2] + 0.5, 0.5)
        image = top.imshow(rates[k].T * scale, aspect="auto", cmap="magma", vmin=0, vmax=vmax,
                           extent=extent, interpolation="nearest")
        if spikes is not None:
            ti, ni = np.nonzero(spikes[k])
            # Circles shrink with the number of neurons, so that they mark spikes, not hide
            # the rates (30 neurons: as drawn before; 200: a fifth of that).
            size = min(1.0, 30 / rates.shape[2])
            top.scatter(t[ti], ni + 1, s=size * (6 + 6 * spikes[k][ti, ni]), facecolors="none",
                        edgecolors="cyan", linewidths=0.6 * size ** 0.5)
        _title(top, k, t, stretch)
        _shade(top, t, stretch, edges=True)
        top.set_ylabel("neuron" if c == 0 else "")
        for i, nrn in enumerate(busiest):
            color = f"C{i}"
            bottom.plot(t, rates[k, :, nrn] * scale, color=color, label=f"neuron {nrn + 1}")
            if truth is not None:
                bottom.plot(t, truth[k, :, nrn] * scale, "--", color=color)
        _shade(bottom, t, stretch)
        bottom.set_xlabel(t_label)
        bottom.set_ylabel(f"rate ({unit})" if c == 0 else "")
        bottom.grid(alpha=0.3)
    if image is not None:
        fig.colorbar(image, ax=axes[0, :].tolist(), label=f"inferred rate ({unit})", shrink=0.9)
    note = "solid: inferred" + (", dashed: true rate" if truth is not None else "")
    axes[1, 0].legend(fontsize=7, title=note, title_fontsize=7)
    return fig


N_TRACE_CHANNELS = 4


def example_traces(means: np.ndarray, trials: Sequence[int], data: np.ndarray | None,
                   truth: np.ndarray | None, bin_ms: float | None,
                   stretches: Sequence[Stretch] | None = None) -> Figure:
    """Continuous data: for each trial (columns) and each of the most active channels (rows),
    the observed signal (grey), the inferred mean (solid) and the true mean (dashed).
    stretches: the columns are stretches of one recording (one per entry of `trials`)."""
    ref = data if data is not None else means
    channels = np.argsort(np.abs(ref).mean(axis=(0, 1)))[::-1][:N_TRACE_CHANNELS]
    fig = Figure(figsize=((6.0 if stretches else 3.4) * len(trials) + 0.8,
                          1.7 * len(channels) + 0.6), layout="constrained")
    axes = fig.subplots(len(channels), len(trials), squeeze=False,
                        sharex="col" if stretches else True)
    for c, k in enumerate(trials):
        stretch = stretches[c] if stretches else None
        t, t_label = _time_axis(means.shape[1], bin_ms, stretch.first if stretch else 0)
        for r, ch in enumerate(channels):
            ax = axes[r, c]
            _shade(ax, t, stretch)
            if data is not None:
                ax.plot(t, data[k, :, ch], color="0.6", lw=0.8)
            ax.plot(t, means[k, :, ch], color=f"C{r}", lw=1.4)
            if truth is not None:
                ax.plot(t, truth[k, :, ch], "--", color=f"C{r}", lw=1.0)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(f"channel {ch + 1}", fontsize=8)
            if r == 0:
                _title(ax, k, t, stretch)
        axes[-1, c].set_xlabel(t_label)
    return fig


def pca(factors: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Project trials x time x factors onto the first k principal components (pooled over
    trials and time); returns (trials x time x k, fraction of variance of each component)."""
    x = factors.reshape(-1, factors.shape[-1]).astype(np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k_eff = min(k, vt.shape[0])
    proj = (x @ vt[:k_eff].T).reshape(*factors.shape[:2], k_eff)
    if k_eff < k:  # fewer factors than components: pad so plots keep their three axes
        proj = np.concatenate([proj, np.zeros((*proj.shape[:2], k - k_eff))], axis=-1)
    var = s**2 / max(float((s**2).sum()), 1e-300)
    return proj, np.pad(var[:k_eff], (0, k - k_eff))


def recording_pieces(x: np.ndarray, length: int) -> np.ndarray:
    """time x dim -> pieces x length x dim: a recording cut end to end (the last partial piece
    dropped), so a trajectory plot can show stretches of it the way it shows trials."""
    n = max(1, len(x) // max(1, length))
    return x[: n * length].reshape(n, min(length, len(x)), -1)


def factor_trajectories(factors: np.ndarray, conditions: np.ndarray | None,
                        unit: str = "trial") -> tuple[Figure, str]:
    """First three PCs of the factors: condition averages coloured by condition where conditions
    are known, else single trials (unit: "segment" for a recording's) coloured by their number.
    Returns the figure and a caption."""
    from matplotlib import colormaps

    proj, var = pca(factors)
    if conditions is not None:
        labels = np.unique(conditions)[:MAX_CONDITIONS]
        traces = [proj[conditions == c].mean(axis=0) for c in labels]
        cmap = colormaps["hsv"]
        what = (f"{len(traces)} condition average{'s' if len(traces) != 1 else ''}, "
                "colour = condition")
    else:
        step = max(1, math.ceil(len(proj) / MAX_LINES))
        traces = list(proj[::step])
        known = " (conditions unknown)" if unit == "trial" else ""
        order = "position in the recording" if unit == "piece" else f"{unit} number"
        cmap, what = colormaps["viridis"], (f"{len(traces)} {'' if unit == 'piece' else 'single '}"
                                            f"{unit}s{known}, colour = {order}")
    colors = [cmap(i / max(len(traces), 1)) for i in range(len(traces))]
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax2 = fig.add_subplot(1, 2, 2)
    for tr, col in zip(traces, colors, strict=True):
        ax3.plot(tr[:, 0], tr[:, 1], tr[:, 2], color=col, lw=1)
        ax3.scatter([tr[0, 0]], [tr[0, 1]], [tr[0, 2]], color=col, s=10)
        ax2.plot(tr[:, 0], tr[:, 1], color=col, lw=1)
        ax2.plot([tr[0, 0]], [tr[0, 1]], "o", color=col, ms=3)
    ax3.set_box_aspect(None, zoom=0.9)  # room for the axis labels inside the figure
    ax3.tick_params(labelsize=7, pad=1)
    for axis, label in ((ax3.xaxis, "PC1"), (ax3.yaxis, "PC2"), (ax3.zaxis, "PC3")):
        axis.set_label_text(label)
        axis.labelpad = 2
    ax2.set_xlabel(f"PC1 ({100 * var[0]:.0f}% var)")
    ax2.set_ylabel(f"PC2 ({100 * var[1]:.0f}% var)")
    ax2.grid(alpha=0.3)
    caption = (f"{what}; dots mark {unit} starts. Variance explained by PC1-3: "
               + ", ".join(f"{100 * v:.0f}%" for v in var) + ".")
    return fig, caption


def inferred_inputs(inputs: np.ndarray, trials: Sequence[int], bin_ms: float | None,
                    true_times: np.ndarray | None = None) -> Figure:
    """Each inferred-input dimension over time: example trials and the mean +- sd over trials;
    with `true_times` (0-based bins, one per trial) each example trial's true input time as a
    dotted line in the trial's colour."""
    t, t_label = _time_axis(inputs.shape[1], bin_ms)
    dims = min(inputs.shape[2], 8)
    fig = Figure(figsize=(8, 1.8 * dims + 0.8), layout="constrained")
    axes = fig.subplots(dims, 1, squeeze=False, sharex=True)[:, 0]
    mean, sd = inputs.mean(axis=0), inputs.std(axis=0)
    for d, ax in enumerate(axes):
        ax.fill_between(t, mean[:, d] - sd[:, d], mean[:, d] + sd[:, d], color="0.85",
                        label="mean +- sd over trials")
        ax.plot(t, mean[:, d], color="black", lw=1.5)
        for i, k in enumerate(trials):
            ax.plot(t, inputs[k, :, d], color=f"C{i}", lw=1, label=f"trial {k + 1}")
            if true_times is not None:
                ax.axvline(t[int(true_times[k])], color=f"C{i}", lw=1, ls=":")
        ax.set_ylabel(f"input {d + 1} (a.u.)")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(t_label)
    axes[0].legend(fontsize=7, ncol=min(len(trials) + 1, 5))
    return fig


def inputs_in_stretches(inputs: np.ndarray, stretches: Sequence[Stretch], bin_ms: float | None
                        ) -> Figure:
    """A recording's merged inferred inputs (stretches x bins x dims) over the stretches of
    example_trials, one column per stretch: a recording has no trials to average over."""
    dims = min(inputs.shape[2], 8)
    fig = Figure(figsize=(6.0 * len(stretches) + 0.8, 1.8 * dims + 0.8), layout="constrained")
    axes = fig.subplots(dims, len(stretches), squeeze=False, sharex="col")
    for c, stretch in enumerate(stretches):
        t, t_label = _time_axis(inputs.shape[1], bin_ms, stretch.first)
        for d in range(dims):
            ax = axes[d, c]
            _shade(ax, t, stretch)
            ax.plot(t, inputs[c, :, d], color=f"C{d}", lw=1)
            ax.set_ylabel(f"input {d + 1} (a.u.)" if c == 0 else "")
            ax.grid(alpha=0.3)
        _title(axes[0, c], c, t, stretch)
        axes[-1, c].set_xlabel(t_label)
    return fig


def rates_vs_truth(panels: list[tuple[str, np.ndarray]], truth: np.ndarray,
                   bin_ms: float | None, max_points: int = 4000, seed: int = 0,
                   units: tuple[float, str] | None = None, same_units: bool = True) -> Figure:
    """Inferred vs true rates, one scatter per method (the tutorial's compare_rates.m view);
    units: (scale, label) for data that are not spike counts; same_units False: the truth is
    spike rates behind another signal (deconvolved calcium), with no y = x to compare to."""
    from autolfads.analysis.metrics import r2_rates

    scale, unit = units or rate_units(bin_ms)
    flat_truth = truth.ravel()
    pick = np.random.default_rng(seed).choice(flat_truth.size,
                                              size=min(max_points, flat_truth.size),
                                              replace=False)
    fig = Figure(figsize=(3.6 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    lo = min(0.0, float(flat_truth[pick].min() * scale)) if pick.size else 0.0  # signed data
    hi = float(flat_truth[pick].max() * scale) if pick.size else 1.0
    for ax, (name, rates) in zip(axes, panels, strict=True):
        ax.scatter(flat_truth[pick] * scale, rates.ravel()[pick] * scale, s=3, alpha=0.3,
                   color="C0", edgecolors="none")
        if same_units:
            ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        ax.set_title(f"{name}: R^2 = {r2_rates(rates, truth):.3f}", fontsize=10)
        ax.set_xlabel(f"true rate ({unit})" if same_units else "true rate (spikes/bin)")
        ax.set_ylabel(f"inferred rate ({unit})" if same_units else f"inferred mean ({unit})")
        ax.grid(alpha=0.3)
    return fig
