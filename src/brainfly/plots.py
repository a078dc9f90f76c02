"""Figures: benchmark speed, and engine-vs-reference comparisons (matplotlib, Agg backend).

Every function writes one PNG (folders created, written atomically) and returns its
path; matplotlib is imported inside the functions, so ``import brainfly`` stays light.
A synthetic connectome is said so in the titles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["plot_benchmark", "plot_comparisons"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    from ._io import atomic_write

    path = Path(path)
    plt = _pyplot()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix[1:] or "png"))
    plt.close(fig)
    return path


def plot_benchmark(results: Any, out: str | Path, *, experiment: str | None = None) -> Path:
    """Simulation time and real-time ratio vs duration and vs trials, per engine (log scales).

    Parameters
    ----------
    results : str, Path or pandas.DataFrame
        The benchmark CSV (or its frame); only rows with status ``ok`` are drawn.
    out : str or Path
        PNG to write.
    experiment : str, optional
        Only this experiment (default: the most frequent one).

    Returns
    -------
    Path
    """
    import pandas as pd

    plt = _pyplot()
    if isinstance(results, (str, Path)):
        from .bench.grid import read_results

        frame = read_results(results)
    else:
        frame = results.copy()
    frame = frame[frame["status"] == "ok"].copy()
    if experiment is None and len(frame):
        experiment = frame["experiment"].mode().iloc[0]
    if experiment is not None:
        frame = frame[frame["experiment"] == experiment]
    for col in ("t_run", "n_run", "sim_s", "realtime_ratio"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
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
    from matplotlib.ticker import FuncFormatter

    for ax, xl, yl in ((axes[0, 0], "simulated duration t_run (s)", "simulation time (s)"),
                       (axes[0, 1], "trials n_run", "simulation time (s)"),
                       (axes[1, 0], "simulated duration t_run (s)", "real-time ratio (t_run·n_run / sim time)"),
                       (axes[1, 1], "trials n_run", "real-time ratio (t_run·n_run / sim time)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    for ax in axes[1]:
        ax.axhline(1.0, color="grey", lw=1, ls="--")
    if t_values:
        for ax in axes[:, 0]:
            ax.set_xticks([float(t) for t in t_values])
    if n_values:
        for ax in axes[:, 1]:
            ax.set_xticks([float(n) for n in n_values])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        axes[0, 0].legend(fontsize=7, ncol=2)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    if handles:
        axes[0, 1].legend(fontsize=7, ncol=2)
    title = f"brainfly benchmark: {experiment or ''}"
    if len(frame) and "synthetic" in frame and frame["synthetic"].astype(str).str.lower().eq("true").any():
        title += "  [SYNTHETIC connectome]"
    if len(frame) and "cpu_model" in frame:
        title += f"\n{frame['cpu_model'].iloc[-1]}; GPU: {frame['gpu'].iloc[-1] if 'gpu' in frame else '?'}"
    if not len(frame):
        title += "\n(no successful runs to show)"
    fig.suptitle(title)
    return _save(fig, out)


def _rates(result: Any, t_run: float) -> dict[int, float]:
    from .compare import neuron_rate_matrix

    fids, rates = neuron_rate_matrix(result, t_run=t_run)
    mean = rates.mean(axis=0) if rates.shape[0] else np.zeros(fids.size)
    return dict(zip(fids.tolist(), mean.tolist()))


def plot_comparisons(comparisons: Iterable[Any], loaded: Mapping[tuple, Any], out: str | Path,
                     *, max_panels: int = 12) -> Path:
    """Rate-vs-rate scatter per comparison, plus a raster of the first diverging region.

    Parameters
    ----------
    comparisons : iterable of Comparison
    loaded : mapping (engine, experiment, t_run key, n_run) -> SpikeResult
        As returned by :func:`brainfly.compare.compare_saved_runs`.
    out : str or Path
        PNG to write.
    """
    from .compare import format_t_run

    plt = _pyplot()
    comps = list(comparisons)[:max_panels]
    diverged = next((c for c in comps if c.first_divergence), None)
    n_panels = len(comps) + (1 if diverged is not None else 0)
    ncols = min(3, max(n_panels, 1))
    nrows = max(1, int(np.ceil(n_panels / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.3 * nrows), squeeze=False)
    flat = axes.ravel()

    def find(engine: str, c: Any, n_trials: int) -> Any:
        key = (engine, c.experiment, format_t_run(c.t_run), n_trials)
        if key in loaded:
            return loaded[key]
        for k, v in loaded.items():
            if k[0] == engine and k[1] == c.experiment and k[2] == format_t_run(c.t_run):
                return v
        return None

    for ax, c in zip(flat, comps):
        ref = find(c.reference_engine, c, c.n_trials_reference)
        cand = find(c.candidate_engine, c, c.n_trials_candidate)
        if ref is None or cand is None:
            ax.set_axis_off()
            continue
        r, k = _rates(ref, c.t_run), _rates(cand, c.t_run)
        union = sorted(set(r) | set(k))
        x = np.array([r.get(f, 0.0) for f in union])
        y = np.array([k.get(f, 0.0) for f in union])
        ax.scatter(x, y, s=6, alpha=0.6, color={"MATCH": "tab:green", "CLOSE": "tab:orange"}.get(c.verdict, "tab:red"))
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
    if diverged is not None:
        ax = flat[used]
        used += 1
        _raster(ax, diverged, find(diverged.reference_engine, diverged, diverged.n_trials_reference),
                find(diverged.candidate_engine, diverged, diverged.n_trials_candidate))
    for ax in flat[used:]:
        ax.set_axis_off()
    title = "brainfly: engines vs ground truth (Brian2)"
    if any(getattr(c, "synthetic", False) for c in comps):
        title += "  [SYNTHETIC connectome]"
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)


def _raster(ax: Any, c: Any, ref: Any, cand: Any, window_steps: int = 200, max_neurons: int = 40) -> None:
    d = c.first_divergence
    if ref is None or cand is None:
        ax.set_axis_off()
        return
    lo, hi = d["step"] - window_steps, d["step"] + window_steps
    rows: dict[int, int] = {}
    for res, color, dy in ((ref, "black", -0.15), (cand, "tab:red", 0.15)):
        fids = res.flywire_ids[res.idx]
        sel = (res.trial == d["trial"]) & (res.step >= lo) & (res.step <= hi)
        for f in np.unique(fids[sel]).tolist():
            if f not in rows and len(rows) < max_neurons:
                rows[f] = len(rows)
    if d["flywire_id"] not in rows:
        rows[d["flywire_id"]] = len(rows)
    for res, color, dy, name in ((ref, "black", -0.15, c.reference_engine), (cand, "tab:red", 0.15, c.candidate_engine)):
        fids = res.flywire_ids[res.idx]
        sel = (res.trial == d["trial"]) & (res.step >= lo) & (res.step <= hi)
        xs, ys = [], []
        for f, s in zip(fids[sel].tolist(), res.step[sel].tolist()):
            if f in rows:
                xs.append(s * res.dt_s * 1e3)
                ys.append(rows[f] + dy)
        ax.scatter(xs, ys, marker="|", s=60, color=color, label=name)
    ax.axvline(d["t"] * 1e3, color="tab:blue", lw=1, ls=":")
    ax.set_xlabel(f"time (ms), trial {d['trial']}")
    ax.set_ylabel("neuron (first to spike in the window first)")
    ax.set_title(f"first divergence: {d['side']} spike of {d['flywire_id']}"
                 + (f" ({d['name']})" if d.get("name") else "") + f" at {d['t'] * 1e3:.1f} ms", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
