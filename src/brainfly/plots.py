"""Figures: benchmark speed, and engine-vs-reference comparisons (matplotlib, Agg backend).

Each function takes the data it draws (the benchmark's rows, the comparisons with their
rates, the spikes of a diverging pair) and computes nothing: the numbers come from
:mod:`brainfly.store`, :mod:`brainfly.metrics` and :mod:`brainfly.compare`. Each writes
one image (folders created, written atomically) and returns its path. matplotlib is an
optional heavy import, made on first drawing, so that importing this module stays light.
A synthetic connectome is said so in the titles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._io import atomic_write
from .store import format_t_run

__all__ = ["plot_benchmark", "plot_comparisons"]

_VERDICT_COLORS = {"MATCH": "tab:green", "CLOSE": "tab:orange"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix[1:] or "png"))
    _pyplot().close(fig)
    return path


def _plain_log_axes(ax: Any, xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def plot_benchmark(rows: Any, out: str | Path, *, experiment: str | None = None) -> Path:
    """Simulation time and real-time ratio vs duration and vs trials, per engine (log scales).

    Parameters
    ----------
    rows : pandas.DataFrame
        The benchmark's rows as :func:`brainfly.store.read_results` reads them (numeric
        columns parsed); only rows with status ``ok`` are drawn.
    out : str or Path
        Image to write (PNG by its suffix).
    experiment : str, optional
        Only this experiment (default: the most frequent one).

    Returns
    -------
    Path
    """
    plt = _pyplot()
    frame = rows[rows["status"] == "ok"]
    if experiment is None and len(frame):
        experiment = frame["experiment"].mode().iloc[0]
    if experiment is not None:
        frame = frame[frame["experiment"] == experiment]
    frame = frame.dropna(subset=["t_run", "n_run", "sim_s"])
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    engines = sorted(frame["engine"].unique()) if len(frame) else []
    colors = {e: plt.cm.tab10(k % 10) for k, e in enumerate(engines)}
    markers = "osD^v<>px*"
    n_values = sorted(frame["n_run"].unique()) if len(frame) else []
    t_values = sorted(frame["t_run"].unique()) if len(frame) else []
    for e in engines:
        sub = frame[frame["engine"] == e]
        # left column: against duration, one line per trial count; right: the reverse
        for col, group, x, values, label in ((0, "n_run", "t_run", n_values, lambda n: f"n={int(n)}"),
                                             (1, "t_run", "n_run", t_values, lambda t: f"t={t:g}s")):
            for j, value in enumerate(values):
                s = sub[sub[group] == value].sort_values(x)
                if not len(s):
                    continue
                kw = dict(color=colors[e], marker=markers[j % len(markers)],
                          alpha=0.35 + 0.65 * (j + 1) / len(values), label=f"{e} {label(value)}")
                axes[0, col].plot(s[x], s["sim_s"], **kw)
                axes[1, col].plot(s[x], s["realtime_ratio"], **kw)
    ratio = "real-time ratio (t_run·n_run / sim time)"
    for ax, xl, yl in ((axes[0, 0], "simulated duration t_run (s)", "simulation time (s)"),
                       (axes[0, 1], "trials n_run", "simulation time (s)"),
                       (axes[1, 0], "simulated duration t_run (s)", ratio),
                       (axes[1, 1], "trials n_run", ratio)):
        _plain_log_axes(ax, xl, yl)
    for ax in axes[1]:
        ax.axhline(1.0, color="grey", lw=1, ls="--")
    if t_values:
        for ax in axes[:, 0]:
            ax.set_xticks([float(t) for t in t_values])
    if n_values:
        for ax in axes[:, 1]:
            ax.set_xticks([float(n) for n in n_values])
    for ax in axes[0]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    title = f"brainfly benchmark: {experiment or ''}"
    if len(frame) and "synthetic" in frame and frame["synthetic"].astype(str).str.lower().eq("true").any():
        title += "  [SYNTHETIC connectome]"
    if len(frame) and "cpu_model" in frame:
        title += f"\n{frame['cpu_model'].iloc[-1]}; GPU: {frame['gpu'].iloc[-1] if 'gpu' in frame else '?'}"
    if not len(frame):
        title += "\n(no successful runs to show)"
    fig.suptitle(title)
    return _save(fig, out)


def plot_comparisons(comparisons: Sequence[Any], out: str | Path, *, raster: tuple[Any, Any, Any] | None = None,
                     max_panels: int = 12) -> Path:
    """Rate-vs-rate scatter per comparison, plus a raster of the first diverging region.

    Parameters
    ----------
    comparisons : sequence of Comparison
        As :func:`brainfly.compare.compare_results` returns them: each panel draws its
        ``rates`` (the mean rates of both runs over the union of their active neurons,
        :class:`brainfly.metrics.PairedRates`) coloured by its ``verdict``; a comparison
        without rates gets an empty panel.
    out : str or Path
        Image to write (PNG by its suffix).
    raster : (Comparison, SpikeResult, SpikeResult), optional
        A comparison with a ``first_divergence`` and its reference's and candidate's spikes:
        drawn as a raster around the divergence in one more panel.
    max_panels : int
        Scatter panels at most.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    comps = list(comparisons)[:max_panels]
    n_panels = len(comps) + (1 if raster is not None else 0)
    ncols = min(3, max(n_panels, 1))
    nrows = max(1, int(np.ceil(n_panels / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.3 * nrows), squeeze=False)
    flat = axes.ravel()
    for ax, c in zip(flat, comps):
        if c.rates is None:
            ax.set_axis_off()
            continue
        x, y = c.rates.reference_mean, c.rates.candidate_mean
        ax.scatter(x, y, s=6, alpha=0.6, color=_VERDICT_COLORS.get(c.verdict, "tab:red"))
        hi = max(float(x.max()) if x.size else 1.0, float(y.max()) if y.size else 1.0, 1.0) * 1.05
        ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel(f"{c.reference_engine} rate (Hz)")
        ax.set_ylabel(f"{c.candidate_engine} rate (Hz)")
        pear = "nan" if c.pearson is None or c.pearson != c.pearson else f"{c.pearson:.3f}"
        ax.set_title(f"{c.candidate_engine} vs {c.reference_engine}: {c.verdict}\n"
                     f"{c.experiment} t={format_t_run(c.t_run)}s n={c.n_trials_candidate}; r={pear}, "
                     f"ratio {c.spike_ratio:.2f}", fontsize=9)
    used = len(comps)
    if raster is not None:
        _raster(flat[used], *raster)
        used += 1
    for ax in flat[used:]:
        ax.set_axis_off()
    title = "brainfly: engines vs ground truth (Brian2)"
    if any(getattr(c, "synthetic", False) for c in comps):
        title += "  [SYNTHETIC connectome]"
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)


def _raster(ax: Any, c: Any, ref: Any, cand: Any, window_steps: int = 200, max_neurons: int = 40) -> None:
    """Spikes of both runs in the trial of the first divergence, ±window_steps around it."""
    d = c.first_divergence
    lo, hi = d["step"] - window_steps, d["step"] + window_steps
    windows = []
    for res in (ref, cand):
        fids = np.asarray(res.flywire_ids, dtype=np.int64)[res.idx]
        sel = (res.trial == d["trial"]) & (res.step >= lo) & (res.step <= hi)
        windows.append((fids[sel], res.step[sel] * res.dt_s * 1e3))
    rows: dict[int, int] = {}
    for fids, _ in windows:  # neurons in order of first spike in the window, reference first
        for f in dict.fromkeys(fids.tolist()):
            if f not in rows and len(rows) < max_neurons:
                rows[f] = len(rows)
    rows.setdefault(d["flywire_id"], len(rows))
    for (fids, t_ms), color, dy, name in zip(windows, ("black", "tab:red"), (-0.15, 0.15),
                                             (c.reference_engine, c.candidate_engine)):
        shown = np.array([f in rows for f in fids.tolist()], dtype=bool)
        ys = [rows[f] + dy for f in fids[shown].tolist()]
        ax.scatter(t_ms[shown], ys, marker="|", s=60, color=color, label=name)
    ax.axvline(d["t"] * 1e3, color="tab:blue", lw=1, ls=":")
    ax.set_xlabel(f"time (ms), trial {d['trial']}")
    ax.set_ylabel("neuron (first to spike in the window first)")
    ax.set_title(f"first divergence: {d['side']} spike of {d['flywire_id']}"
                 + (f" ({d['name']})" if d.get("name") else "") + f" at {d['t'] * 1e3:.1f} ms", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
