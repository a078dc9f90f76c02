"""Figures: benchmark speed, engine-vs-reference comparisons, and the report's (matplotlib, Agg backend).

Each function takes the data it draws (the benchmark's rows, the comparisons with their
rates, the spikes of a diverging pair) and computes nothing: the numbers come from
:mod:`brainfly.store`, :mod:`brainfly.metrics` and :mod:`brainfly.compare`. Each writes
one image (folders created, written atomically) and returns its path; the report's figures
(:mod:`brainfly.report`) return a matplotlib Figure instead, which the report embeds. matplotlib is an
optional heavy import, made on first drawing, so that importing this module stays light.
A synthetic connectome is said so in the titles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._io import atomic_write
from .store import format_t_run

__all__ = ["plot_benchmark", "plot_comparisons", "plot_rates_by_cell_type", "plot_propagation_front",
           "plot_contrast_scatter", "plot_rate_sweep", "plot_effects", "plot_effect_heatmap", "plot_shuffle_control"]

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


# =============================================================================== report figures
# The figures of :mod:`brainfly.report`. Each takes a table the report has computed and
# returns a matplotlib Figure (not registered with pyplot: nothing leaks, nothing is shown);
# the caller saves or embeds it.

_SIGNIFICANT = "tab:red"
_NOT_SIGNIFICANT = "0.6"


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    """A new Figure (constrained layout, Agg canvas) and its axes (one, or a row of *ncols*)."""
    _pyplot()  # selects the Agg backend when nothing else is in use
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=True)
    return fig, axes


def _empty(ax: Any, text: str, title: str = "") -> Any:
    """Say in the axes why there is nothing to draw; returns the axes' figure."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def _significance_scatter(ax: Any, x: np.ndarray, y: np.ndarray, q: Any, alpha: float) -> np.ndarray:
    """Points with q < alpha in red, the others in grey (NaN q: not significant); returns the red mask."""
    sig = np.nan_to_num(np.asarray(q, dtype=np.float64), nan=1.0) < alpha
    ax.scatter(x[~sig], y[~sig], s=9, alpha=0.5, color=_NOT_SIGNIFICANT, label=f"q ≥ {alpha:g}")
    ax.scatter(x[sig], y[sig], s=14, alpha=0.8, color=_SIGNIFICANT, label=f"q < {alpha:g} ({int(sig.sum())})")
    return sig


def _neg_log10(q: Any) -> np.ndarray:
    """-log10 of q-values, with q = 0 (below float precision) drawn at 1e-300."""
    q = np.asarray(q, dtype=np.float64)
    return -np.log10(np.clip(q, 1e-300, 1.0))


def plot_rates_by_cell_type(table: Any, *, title: str = "") -> Any:
    """Mean firing rate per cell type over its active neurons (horizontal bars).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per cell type, drawn top to bottom in the given order: ``cell_type`` (str),
        ``mean_hz`` (mean of the neurons' mean rates, Hz), ``sem_hz`` (standard error of that
        mean over neurons, Hz; NaN for a single neuron) and ``n_neurons`` (int).
    title : str
        Figure title (say SYNTHETIC there for a generated connectome).

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = len(table)
    fig, ax = _figure(7.5, 1.6 + 0.22 * min(max(n, 1), 60))
    if not n:
        _empty(ax, "no active neurons")
    else:
        y = np.arange(n)
        sem = np.nan_to_num(np.asarray(table["sem_hz"], dtype=np.float64))
        ax.barh(y, table["mean_hz"], xerr=sem, color="tab:blue", capsize=2)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{t} (n={int(k)})" for t, k in zip(table["cell_type"], table["n_neurons"])], fontsize=7)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlabel("mean firing rate over the type's active neurons (Hz), ± sem over neurons")
        ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title or "rates by cell type", fontsize=9)
    return fig


def plot_propagation_front(front: Any, *, title: str = "") -> Any:
    """First-spike latency of each reached neuron, against its path length from the stimulus.

    Parameters
    ----------
    front : pandas.DataFrame
        One row per neuron that spiked: ``latency_s`` (median over trials of the first
        spike's latency after stimulus onset, s) and, when path lengths are known, ``hops``
        (int: shortest path in connections from the stimulated set; -1 = not reachable).
        Without ``hops`` the distribution of latencies is drawn instead.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    lat_ms = np.asarray(front["latency_s"], dtype=np.float64) * 1e3 if len(front) else np.empty(0)
    keep = np.isfinite(lat_ms)
    if "hops" not in front:
        fig, ax = _figure(7.5, 4.0)
        if not keep.any():
            _empty(ax, "no first-spike latencies recorded")
        else:
            ax.hist(lat_ms[keep], bins=min(60, max(10, int(np.sqrt(keep.sum())))), color="tab:blue")
            ax.set_xlabel("first-spike latency after stimulus onset (ms), median over trials")
            ax.set_ylabel("neurons")
        ax.set_title(title or "propagation front: latency distribution", fontsize=9)
        return fig
    hops = np.asarray(front["hops"], dtype=np.int64)
    fig, ax = _figure(7.5, 4.5)
    if not keep.any():
        _empty(ax, "no first-spike latencies recorded")
    else:
        rng = np.random.default_rng(0)  # jitter for visibility only: the same picture each time
        x, y = hops[keep], lat_ms[keep]
        shown = np.where(x < 0, x.max(initial=0) + 1, x)  # unreachable neurons in a last column
        ax.scatter(shown + rng.uniform(-0.18, 0.18, shown.size), y, s=8, alpha=0.5, color="tab:blue",
                   label="neuron (median over trials)")
        levels = np.unique(shown)
        med = [float(np.median(y[shown == h])) for h in levels]
        ax.plot(levels, med, color="tab:red", marker="o", lw=1.5, label="median per path length")
        ax.set_xticks(levels)
        ax.set_xticklabels([str(h) if h in set(x.tolist()) and h >= 0 else "none" for h in levels.tolist()])
        ax.set_xlabel("path length from the stimulated neurons (connections; 'none': not reachable)")
        ax.set_ylabel("first-spike latency after stimulus onset (ms)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title or "propagation front: latency vs path length", fontsize=9)
    return fig


def _annotate(ax: Any, xs: Any, ys: Any, labels: Sequence[str]) -> None:
    """Number the points and list the numbers' labels beside the axes (legible however close the points are)."""
    for k, (x, y) in enumerate(zip(xs, ys), start=1):
        ax.annotate(str(k), (x, y), xytext=(3, 2), textcoords="offset points", fontsize=7, color="0.15")
    if len(labels):
        ax.text(1.02, 1.0, "\n".join(f"{k}  {text}" for k, text in enumerate(labels, start=1)), transform=ax.transAxes,
                va="top", ha="left", fontsize=7, family="monospace")


def plot_contrast_scatter(table: Any, *, label_a: str = "A", label_b: str = "B", alpha: float = 0.05,
                          labels: int = 12, title: str = "") -> Any:
    """Rate in condition A against rate in condition B, per neuron (symlog axes).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`brainfly.effects.contrast`'s table: ``rate_a_hz``, ``rate_b_hz`` (mean
        rates, Hz), ``q_value``, ``diff_hz``, ``name`` (optional) and ``flywire_id``.
    label_a, label_b : str
        What A and B are (axis labels).
    alpha : float
        Neurons with ``q_value < alpha`` are drawn in red; the *labels* of them with the
        largest ``|diff_hz|`` are numbered, their names (else FlyWire IDs) listed beside.
    labels : int
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _figure(9.0, 6.0)
    if not len(table):
        return _empty(ax, "no neuron fired in either run", title or "rates A vs B")
    a = np.asarray(table["rate_a_hz"], dtype=np.float64)
    b = np.asarray(table["rate_b_hz"], dtype=np.float64)
    sig = _significance_scatter(ax, a, b, table["q_value"], alpha)
    hi = max(float(np.nanmax(np.concatenate([a, b]))) if a.size else 1.0, 1.0) * 1.3
    ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--")
    from matplotlib.ticker import FuncFormatter

    for axis in ("x", "y"):
        getattr(ax, f"set_{axis}scale")("symlog", linthresh=1.0)
        getattr(ax, f"{axis}axis").set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    if sig.any() and labels > 0:
        diff = np.abs(np.asarray(table["diff_hz"], dtype=np.float64))
        pick = np.flatnonzero(sig)[np.argsort(-diff[sig], kind="stable")[:labels]]
        names = table["name"].astype(str).to_numpy() if "name" in table else np.full(len(table), "")
        fids = table["flywire_id"].astype(str).to_numpy()
        _annotate(ax, a[pick], b[pick], [names[i] or fids[i] for i in pick.tolist()])
    ax.set_xlabel(f"{label_a}: mean rate (Hz, symlog)")
    ax.set_ylabel(f"{label_b}: mean rate (Hz, symlog)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.set_title(title or "rates A vs B", fontsize=9)
    return fig


def plot_rate_sweep(sweep: Any, *, title: str = "", max_lines: int = 10, max_panels: int = 6) -> Any:
    """Readout rate against the stimulus rate, one line per readout (or per panel's line), with a 95% band.

    Parameters
    ----------
    sweep : pandas.DataFrame
        ``line`` (str: what a line is), ``rate_hz`` (stimulus rate, Hz), ``mean_hz`` and
        ``sem_hz`` (readout rate and its standard error over trials, Hz), and optionally
        ``panel`` (str: one panel per value, e.g. the readout neuron, when the lines are
        the other manipulation). The band is mean ± 1.96 sem.
    title : str
    max_lines : int
        Lines per panel at most (those with the highest peak rate).
    max_panels : int
        Panels at most (those with the highest peak rate).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not len(sweep):
        fig, ax = _figure(7.5, 4.8)
        return _empty(ax, "no condition varies the stimulus rate", title or "rate sweep")
    panels = (sweep.groupby("panel", sort=False)["mean_hz"].max().sort_values(ascending=False).index[:max_panels]
              if "panel" in sweep else [None])
    ncols = min(len(panels), 2)
    nrows = int(np.ceil(len(panels) / ncols))
    _pyplot()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5 if ncols == 1 else 11.0, 4.8 if nrows == 1 else 3.8 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    hidden = 0
    for ax, panel in zip(axes, panels):
        part = sweep if panel is None else sweep[sweep["panel"] == panel]
        peak = part.groupby("line", sort=False)["mean_hz"].max().sort_values(ascending=False)
        hidden += max(len(peak) - max_lines, 0)
        for k, line in enumerate(peak.index[:max_lines]):
            s = part[part["line"] == line].sort_values("rate_hz")
            x = s["rate_hz"].to_numpy(dtype=np.float64)
            m = s["mean_hz"].to_numpy(dtype=np.float64)
            half = 1.96 * np.nan_to_num(s["sem_hz"].to_numpy(dtype=np.float64))
            color = f"C{k % 10}"
            ax.plot(x, m, marker="o", ms=3, color=color, label=str(line))
            ax.fill_between(x, m - half, m + half, color=color, alpha=0.2, lw=0)
        ax.set_xlabel("stimulus rate (Hz)")
        ax.set_ylabel("readout rate (Hz), mean ± 1.96 sem")
        ax.set_ylim(0, max(ax.get_ylim()[1], 1.0))  # a silent readout: 0 Hz at the bottom of a 1 Hz axis
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6 if panel is not None else 7, loc="upper left")
        if panel is not None:
            ax.set_title(f"readout {panel}", fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    more = [f"{hidden} more lines" if hidden else "",
            f"{sweep['panel'].nunique() - len(panels)} more readouts" if "panel" in sweep
            and sweep["panel"].nunique() > len(panels) else ""]
    more = [m for m in more if m]
    fig.suptitle((title or "rate sweep") + (f"\n({', '.join(more)} not drawn)" if more else ""), fontsize=9)
    return fig


def plot_effects(effects: Any, *, x: str = "diff_hz", alpha: float = 0.05, labels: int = 12, title: str = "") -> Any:
    """Volcano plot: each condition x readout's effect against -log10 of its q-value.

    Parameters
    ----------
    effects : pandas.DataFrame
        The screen's effects: ``diff_hz`` (condition minus base, Hz) or ``effect_size``
        (Hedges' g), ``q_value``, and for the labels ``label`` (the condition) and ``name``
        (the readout).
    x : {"diff_hz", "effect_size"}
        The effect on the horizontal axis.
    alpha : float
        Significance threshold on q (drawn as a dashed line; points below it in red).
    labels : int
        How many of the most significant points (then largest |effect|) to label.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _figure(10.0, 5.5)
    if not len(effects):
        return _empty(ax, "no effects yet", title or "effects")
    ex = np.asarray(effects[x], dtype=np.float64)
    y = _neg_log10(effects["q_value"])
    _significance_scatter(ax, ex, y, effects["q_value"], alpha)
    ax.axhline(-np.log10(alpha), color="grey", lw=1, ls="--")
    ax.axvline(0.0, color="grey", lw=0.8)
    if labels > 0:
        order = np.lexsort((-np.abs(np.nan_to_num(ex)), -np.nan_to_num(y)))[:labels]
        order = order[np.isfinite(ex[order]) & np.isfinite(y[order])]
        text = [f"{c} · {n}" for c, n in zip(effects["label"].astype(str).to_numpy()[order],
                                              effects["name"].astype(str).to_numpy()[order])]
        _annotate(ax, ex[order], y[order], text)
    top = float(np.nanmax(y[np.isfinite(y)], initial=-np.log10(alpha)))
    ax.set_ylim(-0.05 * top, top * 1.08 + 0.3)
    ax.set_xlabel("rate change vs base (Hz)" if x == "diff_hz" else "effect size (Hedges' g, condition vs base)")
    ax.set_ylabel("-log10 q (Benjamini-Hochberg)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax.set_title(title or "effects", fontsize=9)
    return fig


def plot_effect_heatmap(matrix: Any, *, title: str = "") -> Any:
    """Rate change of each readout (columns) in each condition (rows), diverging colours.

    Parameters
    ----------
    matrix : pandas.DataFrame
        Index: condition labels; columns: readout names; values: ``diff_hz`` (Hz, NaN
        where missing). Colours are symmetric about 0 Hz.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_rows, n_cols = matrix.shape
    fig, ax = _figure(max(7.5, 3.0 + 0.45 * n_cols), 2.6 + 0.24 * max(min(n_rows, 80), 1))
    if not matrix.size:
        return _empty(ax, "no effects yet", title or "effects by condition and readout")
    values = matrix.to_numpy(dtype=np.float64)
    lim = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    lim = lim if lim > 0 else 1.0
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                      interpolation="nearest")
    ax.set_xticks(np.arange(n_cols))
    ax.set_xticklabels([str(c) for c in matrix.columns], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(np.arange(n_rows))
    ax.set_yticklabels([str(r) for r in matrix.index], fontsize=7)
    ax.set_xlabel("readout neuron")
    ax.set_ylabel("condition")
    fig.colorbar(image, ax=ax, label="rate change vs base (Hz)")
    ax.set_title(title or "effects by condition and readout", fontsize=9)
    return fig


def plot_shuffle_control(effects: Any, *, value: str = "effect_size", alpha: float = 0.05, title: str = "") -> Any:
    """Effects on the real connectome against those on shuffled ones (the null).

    Parameters
    ----------
    effects : pandas.DataFrame
        The screen's effects with a ``connectome`` column (``real``, ``shuffle-1``, ...),
        *value* and ``q_value``.
    value : {"effect_size", "diff_hz"}
        The effect compared.
    alpha : float
        Threshold on q for the fraction of significant effects (right panel).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Left: the distributions of |effect| (real vs all shuffles pooled, as densities);
        right: the fraction of condition x readout effects with q < alpha per connectome.
    """
    fig, (left, right) = _figure(10.0, 4.2, ncols=2)
    conn = effects["connectome"].astype(str).to_numpy() if len(effects) else np.empty(0, dtype=object)
    mag = np.abs(np.asarray(effects[value], dtype=np.float64)) if len(effects) else np.empty(0)
    real, shuffled = mag[(conn == "real") & np.isfinite(mag)], mag[(conn != "real") & np.isfinite(mag)]
    unit = "Hz" if value == "diff_hz" else "Hedges' g"
    if real.size or shuffled.size:
        both = np.concatenate([real, shuffled])
        bins = np.histogram_bin_edges(both, bins=min(40, max(8, int(np.sqrt(both.size)))))
        for data, color, label in ((real, "tab:blue", "real"), (shuffled, "tab:orange", "shuffled (pooled)")):
            if data.size:
                left.hist(data, bins=bins, density=True, histtype="step", lw=1.8, color=color,
                          label=f"{label} (n={data.size})")
        left.set_xlabel(f"|effect| ({unit})")
        left.set_ylabel("density")
        left.legend(fontsize=7)
        left.grid(True, alpha=0.3)
    else:
        _empty(left, "no effects yet")
    names = sorted(set(conn.tolist()), key=lambda c: (c != "real", c))
    if names:
        q = np.nan_to_num(np.asarray(effects["q_value"], dtype=np.float64), nan=1.0)
        frac = [float(np.mean(q[conn == c] < alpha)) for c in names]
        right.bar(np.arange(len(names)), frac, color=["tab:blue" if c == "real" else "tab:orange" for c in names])
        right.set_xticks(np.arange(len(names)))
        right.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        right.set_ylabel(f"fraction of effects with q < {alpha:g}")
        right.set_xlabel("connectome")
        right.set_ylim(0, 1)
        right.grid(True, axis="y", alpha=0.3)
    else:
        _empty(right, "no effects yet")
    fig.suptitle(title or "real vs shuffled connectomes", fontsize=9)
    return fig
