"""Self-contained HTML reports of a run, of two runs side by side, or of a screen folder.

:func:`write_report` reads a run's spike file (with its ``*_front.parquet`` beside it when
there is one) or a screen's folder (``screen.json`` and its tables, see
:mod:`brainfly.screen`) and writes one HTML page: inline CSS, figures as PNG in ``data:``
URLs, no script and no external address, so that the file can be mailed or archived as
it is. Every page states where its numbers come from (experiment, engine and versions,
connectome and its digest, brainfly's version, the date) and says in a banner when the
connectome is SYNTHETIC.

The numbers are computed here with pandas and scipy (rates by cell type, path lengths
from the stimulated neurons) or come from :func:`brainfly.effects.contrast` and the
screen's tables; the figures are :mod:`brainfly.plots`'.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
import datetime
import html
import io
import json
import math
from pathlib import Path
import re
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ._io import atomic_write
from ._version import __version__
from .connectome import DATASET_NAMES, Connectome, load_connectome, resolve_neurons
from .connectome.graph import hop_distances
from .effects import contrast
from .errors import BrainflyError, DataError, ValidationError
from .plots import (
    plot_contrast_scatter, plot_effect_heatmap, plot_effects, plot_propagation_front, plot_rate_sweep,
    plot_rates_by_cell_type, plot_shuffle_control,
)
from .results import SpikeResult
from .runner import output_paths
from .store import load_run

__all__ = ["write_report", "run_report", "screen_report", "read_screen", "ScreenTables", "rates_by_cell_type",
           "first_spike_latencies", "path_lengths", "is_screen_folder"]

#: Significance threshold on q-values (Benjamini-Hochberg) used to highlight effects.
ALPHA = 0.05
#: Rows of a table shown in the page at most (the files hold them all).
MAX_ROWS = 200
#: Columns of a screen's tables (the screen folder contract), for tables not written yet.
SCREEN_COLUMNS: dict[str, tuple[str, ...]] = {
    "conditions": ("condition_id", "connectome", "kind", "label", "silence_target", "activate_target", "rate_hz",
                   "param", "param_value", "experiment"),
    "readout": ("condition_id", "connectome", "flywire_id", "name", "cell_type", "mean_hz", "std_hz", "sem_hz",
                "n_trials"),
    "summary": ("condition_id", "connectome", "n_spikes", "spikes_per_trial_s", "n_active", "runaway", "sim_s"),
    "effects": ("condition_id", "connectome", "flywire_id", "name", "cell_type", "base_mean_hz", "mean_hz", "diff_hz",
                "ci_low_hz", "ci_high_hz", "effect_size", "t", "p_value", "q_value"),
}
_SYNTHETIC_NAME = re.compile(r"^synthetic-v\d+-seed(\d+)$")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;
background:#fafafa;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1.2rem 1.5rem 3rem;background:#fff}
h1{font-size:1.6rem;margin:.4rem 0 .8rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem}h3{font-size:1.05rem}
.banner{padding:.6rem .9rem;border-radius:4px;margin:.6rem 0;font-weight:600}
.synthetic{background:#fff1d6;border:2px solid #e08a00;color:#7a4500}
.running{background:#e6f0ff;border:2px solid #3b73d9;color:#1d3f7a}
.note{color:#555;font-size:.92rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1rem;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#f0f0f0}td.text,th.text{text-align:left}
tbody tr:nth-child(even){background:#f8f8f8}
table.kv th{text-align:left;width:14rem}table.kv td{text-align:left;white-space:normal;word-break:break-word}
figure{margin:.8rem 0 1.4rem}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88rem;color:#444}
pre{background:#f5f5f5;padding:.6rem;overflow-x:auto;font-size:.8rem}
nav ul{columns:2;font-size:.9rem}
"""


# =============================================================================== the page
@dataclass
class _Page:
    """An HTML page under construction: sections in order, each with an id for the contents."""

    title: str
    body: list[str] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)

    def section(self, ident: str, heading: str) -> None:
        self.sections.append((ident, heading))
        self.body.append(f'<h2 id="{ident}">{_esc(heading)}</h2>')

    def add(self, fragment: str) -> None:
        self.body.append(fragment)

    def text(self, text: str, cls: str = "") -> None:
        self.body.append(f'<p{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{_esc(text)}</p>')

    def banner(self, text: str, cls: str) -> None:
        self.body.append(f'<div class="banner {cls}" id="{cls}-banner">{_esc(text)}</div>')

    def figure(self, fig: Any, caption: str, ident: str) -> None:
        self.body.append(_figure_html(fig, caption, ident))

    def render(self) -> str:
        contents = "".join(f'<li><a href="#{i}">{_esc(h)}</a></li>' for i, h in self.sections)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{_esc(self.title)}</title><style>{_CSS}</style></head>\n<body><main>"
                f"<h1>{_esc(self.title)}</h1>"
                + (f"<nav><ul>{contents}</ul></nav>" if contents else "")
                + "\n".join(self.body) + "</main></body></html>\n")


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _figure_html(fig: Any, caption: str, ident: str) -> str:
    """A matplotlib Figure as an ``<img>`` with an inline PNG (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    fig.clear()
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure id="{ident}"><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows if v is not None and v != "")
    return f'<table class="kv">{cells}</table>'


def _format(value: Any, plain: bool = False) -> str:
    """A cell's text: numbers rounded for reading, integers with thousands separators unless *plain* (IDs)."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "" if math.isnan(v) else str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e9):
            return f"{v:.3g}"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value)}" if plain else f"{int(value):,}"
    return str(value)


def _table(frame: pd.DataFrame, ident: str, max_rows: int = MAX_ROWS, what: str = "rows") -> str:
    """An HTML table of *frame* (first *max_rows* rows; a note says how many more the data holds)."""
    if not len(frame):
        return f'<p class="note" id="{ident}">(no {what})</p>'
    shown = frame.head(max_rows)
    text_cols = {c for c in shown.columns if shown[c].dtype == object or isinstance(shown[c].dtype, pd.StringDtype)}
    head = "".join(f'<th class="{"text" if c in text_cols else "num"}">{_esc(c)}</th>' for c in shown.columns)
    rows = []
    for values in shown.itertuples(index=False, name=None):
        cells = "".join(f'<td class="{"text" if c in text_cols else "num"}">'
                        f'{_esc(_format(v, plain=str(c).endswith("_id")))}</td>'
                        for c, v in zip(shown.columns, values))
        rows.append(f"<tr>{cells}</tr>")
    more = (f'<p class="note">showing {max_rows:,} of {len(frame):,} {what}</p>' if len(frame) > max_rows else "")
    return f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>{more}'


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M %Z")


# =============================================================================== run analyses
def rates_by_cell_type(rates: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """Mean rate per cell type over its active neurons.

    Parameters
    ----------
    rates : pandas.DataFrame
        :meth:`SpikeResult.rates` with ``names=True`` (columns ``cell_type``, ``mean_hz``).
    top : int, optional
        Keep the types with the highest mean rate.

    Returns
    -------
    pandas.DataFrame
        ``cell_type`` (``"(no cell type)"`` for unannotated neurons), ``n_neurons``,
        ``mean_hz`` (mean over the type's active neurons of their mean rates), ``sem_hz``
        (standard error of that mean over neurons; NaN for one neuron), ``max_hz``;
        sorted by ``mean_hz``, highest first.
    """
    if not len(rates):
        return pd.DataFrame({"cell_type": pd.Series(dtype=object), "n_neurons": pd.Series(dtype=np.int64),
                             "mean_hz": pd.Series(dtype=float), "sem_hz": pd.Series(dtype=float),
                             "max_hz": pd.Series(dtype=float)})
    types = rates["cell_type"].fillna("").astype(str).replace("", "(no cell type)")
    grouped = rates.assign(cell_type=types).groupby("cell_type")["mean_hz"]
    table = grouped.agg(n_neurons="count", mean_hz="mean", sem_hz="sem", max_hz="max").reset_index()
    table = table.sort_values(["mean_hz", "cell_type"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return table.head(top) if top is not None else table


def first_spike_latencies(result: SpikeResult, source: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """First-spike latency after stimulus onset of each neuron that spiked, median over trials.

    From the engine's recorded front (the result's meta, or the ``*_front.parquet`` written
    beside *source*); else from the spikes themselves, relative to the recorded stimulus
    onsets (or to the trial's start).

    Returns
    -------
    (pandas.DataFrame, str)
        Columns ``flywire_id`` (int64), ``latency_s`` (median over the trials in which the
        neuron spiked, s), ``n_trials`` (trials in which it spiked); sorted by latency. And
        a sentence saying where the latencies come from.
    """
    front = result.propagation_front()
    where = "the propagation front the engine recorded"
    if front is None and source is not None:
        path = output_paths(source)["front"]
        if path.is_file():
            front = pd.read_parquet(path)
            where = f"the propagation front the engine recorded ({path.name})"
    if front is None:
        first = _first_spikes(result)
        front = first
        where = ("the first spike of each neuron in each trial, after the recorded stimulus onset"
                 if isinstance(result.meta.get("stimulus_onset_step"), list)
                 else "the first spike of each neuron in each trial, from the trial's start (no stimulus onset recorded)")
    reached = front[np.isfinite(front["latency_s"].to_numpy(dtype=np.float64))]
    table = (reached.groupby("flywire_id")["latency_s"].agg(latency_s="median", n_trials="count").reset_index()
             .sort_values(["latency_s", "flywire_id"], kind="stable").reset_index(drop=True))
    table["flywire_id"] = table["flywire_id"].astype(np.int64)
    return table, where


def _first_spikes(result: SpikeResult) -> pd.DataFrame:
    """(trial, flywire_id, latency_s) of each neuron's first spike in each trial, from the spikes."""
    key = result.trial.astype(np.int64) * result.n_neurons + result.idx
    _, first = np.unique(key, return_index=True)  # spikes are sorted by (trial, step, idx): the earliest
    trial, idx, step = result.trial[first], result.idx[first], result.step[first]
    onsets = result.meta.get("stimulus_onset_step")
    onset = np.zeros(first.size, dtype=np.int64)
    if isinstance(onsets, list) and len(onsets) == result.n_trials:
        rows = np.searchsorted(np.asarray(result.trials, dtype=np.int64), trial)
        onset = np.asarray(onsets, dtype=np.int64)[rows]
    lat = (step - onset).astype(np.float64)
    return pd.DataFrame({"trial": trial.astype(np.int64), "flywire_id": result.flywire_ids[idx],
                         "latency_s": np.where(lat >= 0, lat * result.dt_s, np.nan)})


def path_lengths(connectome: Connectome, sources: Sequence[int] | np.ndarray, *,
                 silenced: Sequence[int] | np.ndarray = (), silence_mode: str = "outgoing") -> np.ndarray:
    """Shortest path (number of connections) from a set of neurons to every neuron.

    Parameters
    ----------
    connectome : Connectome
    sources : int array
        Model indices of the start set (path length 0).
    silenced : int array
        Model indices of silenced neurons: their outgoing connections are not paths (and
        their incoming ones neither with ``silence_mode="both"``), as in the simulation.
    silence_mode : {"outgoing", "both"}

    Returns
    -------
    int64 array, shape (n_neurons,)
        Path length from the nearest source; -1 where no path leads.
    """
    keep = connectome.weight != 0
    off = np.zeros(connectome.n_neurons, dtype=bool)
    off[np.asarray(silenced, dtype=np.int64)] = True
    keep &= ~off[connectome.pre_idx]
    if silence_mode == "both":
        keep &= ~off[connectome.post_idx]
    return hop_distances(connectome, sources, keep=keep)


def _connectome_for(result: SpikeResult, data: Any) -> tuple[Connectome | None, str]:
    """The run's connectome for path lengths, or None and why not.

    Raises
    ------
    DataError
        *data* was given and its digest is not the run's.
    """
    recorded = result.meta.get("connectome") if isinstance(result.meta.get("connectome"), dict) else {}
    digest = str(recorded.get("digest") or "")
    if data is not None:
        net = data if isinstance(data, Connectome) else load_connectome(data, progress=False, download=False)
        if digest and net.content_digest != digest:
            raise DataError(
                f"report: connectome {net.label} (digest {net.content_digest[:16]}) is not the one this run used "
                f"({recorded.get('label') or recorded.get('name') or '?'}, digest {digest[:16]}); "
                "give the run's own connectome as --data, or leave --data out")
        return net, "" if digest else "the run does not record its connectome's digest: not checked"
    name = str(recorded.get("name") or "")
    synth = _SYNTHETIC_NAME.match(name)
    candidate = f"synthetic-{synth.group(1)}" if synth else name if name in DATASET_NAMES else None
    if candidate is None and name and Path(name).is_dir():
        candidate = name
    if candidate is None:
        return None, (f"the connectome this run used ({name or 'not recorded'}) is not a dataset or folder brainfly "
                      "can load; give it with --data to see path lengths")
    try:
        net = load_connectome(candidate, progress=False, download=False)
    except (BrainflyError, OSError) as exc:
        return None, f"the run's connectome {candidate} could not be loaded here ({exc}); give it with --data"
    if digest and net.content_digest != digest:
        return None, (f"the connectome {candidate} found here (digest {net.content_digest[:16]}) is not the one "
                      f"this run used (digest {digest[:16]}); give the run's own with --data")
    return net, ""


def _stimulated_and_silenced(result: SpikeResult, net: Connectome) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Model indices in *net* of the recorded experiment's stimulated and silenced neurons, the
    silence mode, and why the stimulated set is unknown ("" when known)."""
    exp = result.meta.get("experiment") if isinstance(result.meta.get("experiment"), dict) else None
    if not exp:
        return np.empty(0, np.int64), np.empty(0, np.int64), "outgoing", "the run does not record its experiment"
    stim: list[np.ndarray] = []
    why = ""
    schedule = exp.get("input_schedule")
    if schedule:
        path = Path(str(schedule))
        try:
            kicks = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
            stim.append(net.find(pd.unique(kicks["flywire_id"]).astype(np.int64)))
        except (OSError, KeyError, ValueError) as exc:
            why = f"the input schedule {schedule} could not be read ({exc})"
    for k, s in enumerate(exp.get("stimuli") or []):
        stim.append(resolve_neurons(net, list(s.get("neurons") or []), owner=f"stimulus set {k}"))
    silenced = list(exp.get("silenced") or [])
    off = resolve_neurons(net, silenced, owner="silenced set") if silenced else np.empty(0, np.int64)
    found = np.unique(np.concatenate(stim)) if stim else np.empty(0, np.int64)
    found = found[found >= 0]
    if not found.size and not why:
        why = "the experiment stimulates no neuron"
    return found, off, str(exp.get("silence_mode", "outgoing")), why


# =============================================================================== run report
def _run_label(result: SpikeResult) -> str:
    return f"{result.exp_name} ({result.engine or 'engine ?'})"


def _provenance(result: SpikeResult, source: str | Path | None) -> list[tuple[str, Any]]:
    meta = result.meta
    conn = meta.get("connectome") if isinstance(meta.get("connectome"), dict) else {}
    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    exp = meta.get("experiment") if isinstance(meta.get("experiment"), dict) else None
    options = meta.get("engine_options") if isinstance(meta.get("engine_options"), dict) else {}
    return [
        ("spike file", str(source) if source else ""),
        ("experiment", result.exp_name),
        ("experiment (as run)", json.dumps(exp, sort_keys=True) if exp else "not recorded"),
        ("engine", f"{result.engine or '?'}" + (f" on {meta['device']}" if meta.get("device") else "")
         + (" (exact)" if meta.get("exact") else "")),
        ("engine options", ", ".join(f"{k}={v}" for k, v in options.items())),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("connectome", result.connectome_label or conn.get("label") or conn.get("name") or "not recorded"),
        ("connectome digest", conn.get("digest") or "not recorded"),
        ("synthetic connectome", "YES: generated, not the fly's" if result.synthetic else "no"),
        ("trials", f"{result.n_trials} x {result.t_run:g} s (dt {result.dt_s * 1e3:g} ms)"),
        ("run with brainfly", meta.get("brainfly_version") or versions.get("brainfly") or "not recorded"),
        ("report by brainfly", __version__),
        ("report date", _now()),
    ]


def _key_figures(result: SpikeResult, rates: pd.DataFrame) -> list[tuple[str, Any]]:
    n, t_run = result.n_trials, result.t_run
    hz = rates["mean_hz"].to_numpy(dtype=np.float64) if len(rates) else np.empty(0)
    active_per_trial = np.count_nonzero(result.spike_counts(), axis=1) if n else np.zeros(0)
    runaway = result.meta.get("runaway") or []
    sim_s = (result.meta.get("timings") or {}).get("sim_s") if isinstance(result.meta.get("timings"), dict) else None
    return [
        ("spikes", f"{result.n_spikes:,} ({result.n_spikes / max(n * t_run, 1e-12):,.0f} per trial-second)"),
        ("active neurons", f"{result.n_active:,} in any trial; {float(np.mean(active_per_trial)) if n else 0:.1f} "
                           "per trial on average"),
        ("trials x duration", f"{n} x {t_run:g} s"),
        ("rate over active neurons", (f"mean {hz.mean():.2f} Hz, median {np.median(hz):.2f} Hz, "
                                      f"max {hz.max():.2f} Hz") if hz.size else "no neuron spiked"),
        ("self-sustaining activity", f"in {len(runaway)} of {n} trial(s)" if runaway else "none detected"),
        ("simulation time", f"{sim_s:.3f} s" if isinstance(sim_s, (int, float)) else ""),
    ]


def run_report(result: SpikeResult, *, source: str | Path | None = None, versus: SpikeResult | None = None,
               versus_source: str | Path | None = None, data: Any = None, top: int = 40) -> str:
    """The HTML page of one run (and of its contrast with another).

    Parameters
    ----------
    result : SpikeResult
    source : str or Path, optional
        Its spike file (for the ``*_front.parquet`` beside it, and the provenance).
    versus : SpikeResult, optional
        A second run of the same network: adds the contrast section (A = *result*, B =
        *versus*), from :func:`brainfly.effects.contrast`.
    versus_source : str or Path, optional
    data : Connectome, str or Path, optional
        The run's connectome (a Connectome, folder or dataset name) for path lengths from
        the stimulated neurons; default: the dataset the run records, when it loads here.
    top : int
        Neurons in the raster, cell types in the bar chart, rows of the contrast table.

    Returns
    -------
    str
        The page.

    Raises
    ------
    DataError
        *data* is not the connectome the run used (digests differ).
    """
    if top < 1:
        raise ValidationError(f"report: top must be >= 1 (got {top})")
    page = _Page(f"brainfly report: {result.exp_name}" + (f" vs {versus.exp_name}" if versus is not None else ""))
    synthetic = result.synthetic or (versus is not None and versus.synthetic)
    if synthetic:
        page.banner("SYNTHETIC connectome: this run used a generated network, not the fly's connectome. "
                    "Nothing on this page is a finding about the fly.", "synthetic")
    rates = result.rates(names=True)
    page.section("provenance", "Provenance")
    page.add(_kv_table(_provenance(result, source)))
    page.section("summary", "Summary")
    page.add(_kv_table(_key_figures(result, rates)))
    page.add(f'<pre id="summary-text">{_esc(result.summary(names=True, top=min(top, 20)))}</pre>')

    page.section("raster", "Spike raster")
    if result.n_spikes and result.trials:
        page.figure(result.plot_raster(top=top), f"Spikes of the {min(top, result.n_active)} most active neurons "
                    f"in trial {result.trials[0]}, labelled by name (else FlyWire ID).", "raster-figure")
    else:
        page.text("No spikes: nothing to draw.", "note")

    page.section("cell-types", "Rates by cell type")
    by_type = rates_by_cell_type(rates, top=top)
    annotated = bool(len(rates)) and bool((rates["cell_type"].fillna("").astype(str) != "").any())
    if not annotated and len(rates):
        page.text("No active neuron has a cell type in the annotations (a generated network's IDs are not "
                  "FlyWire's): all fall under '(no cell type)'.", "note")
    page.figure(plot_rates_by_cell_type(by_type, title=_title(result, f"the {len(by_type)} cell types with the "
                                                                      "highest mean rate")),
                "Mean rate per cell type over its active neurons (± sem over neurons).", "cell-types-figure")
    page.add(_table(by_type, "cell-types-table", what="cell types"))

    _propagation_section(page, result, source, data)
    if versus is not None:
        _contrast_section(page, result, versus, versus_source, top)
    return page.render()


def _title(result: SpikeResult, what: str) -> str:
    return f"{result.exp_name}: {what}" + ("  [SYNTHETIC connectome]" if result.synthetic else "")


def _propagation_section(page: _Page, result: SpikeResult, source: str | Path | None, data: Any) -> None:
    page.section("propagation", "Propagation front")
    latencies, where = first_spike_latencies(result, source)
    net, why = _connectome_for(result, data)
    stim_why = ""
    if net is not None:
        stim, off, mode, stim_why = _stimulated_and_silenced(result, net)
        if stim.size:
            hops = path_lengths(net, stim, silenced=off, silence_mode=mode)
            latencies["hops"] = hops[net.idx_of(latencies["flywire_id"].to_numpy())] if len(latencies) else []
    if "hops" in latencies:
        caption = (f"First-spike latency (median over trials) of each neuron that spiked against its shortest path "
                   f"from the stimulated neurons in {net.label} (connections of silenced neurons excluded). "
                   f"Latencies from {where}.")
        if why:
            page.text(why, "note")
        reached = latencies[latencies["hops"] >= 0]
        per_hop = (reached.assign(latency_ms=reached["latency_s"] * 1e3).groupby("hops")["latency_ms"]
                   .agg(neurons="count", median_latency_ms="median", min_latency_ms="min").reset_index())
        page.figure(plot_propagation_front(latencies, title=_title(result, "latency vs path length")), caption,
                    "propagation-figure")
        page.add(_table(per_hop, "propagation-table", what="path lengths"))
    else:
        reason = stim_why or why
        page.add(f'<p class="note" id="no-path-lengths">Path lengths are missing: {_esc(reason)}. '
                 "The figure shows the distribution of first-spike latencies only.</p>")
        page.figure(plot_propagation_front(latencies, title=_title(result, "first-spike latencies")),
                    f"First-spike latency (median over trials) of each neuron that spiked, from {where}.",
                    "propagation-figure")


def _contrast_section(page: _Page, a: SpikeResult, b: SpikeResult, b_source: str | Path | None, top: int) -> None:
    page.section("contrast", f"Contrast: A = {_run_label(a)} vs B = {_run_label(b)}")
    page.add(_kv_table([("B: spike file", str(b_source) if b_source else ""),
                        ("B: experiment", b.exp_name),
                        ("B: connectome", b.connectome_label or "not recorded"),
                        ("B: trials", f"{b.n_trials} x {b.t_run:g} s"),
                        ("B: summary", f"{b.n_spikes:,} spikes, {b.n_active:,} active neurons")]))
    table = contrast(a, b, names=True)
    n_sig = int((table["q_value"].fillna(1.0) < ALPHA).sum()) if len(table) else 0
    page.text(f"{len(table):,} neurons fired in A or B; {n_sig:,} differ with q < {ALPHA:g} "
              "(Welch's t test over trials, Benjamini-Hochberg q). Rates are means over trials; differences are B - A, "
              "effect sizes Hedges' g.", "note")
    page.figure(plot_contrast_scatter(table, label_a=f"A {_run_label(a)}", label_b=f"B {_run_label(b)}",
                                      alpha=ALPHA, labels=min(top, 15),
                                      title="rate per neuron, A vs B" + ("  [SYNTHETIC connectome]"
                                                                          if a.synthetic or b.synthetic else "")),
                f"Rate of each neuron in A against B (symlog axes); red: q < {ALPHA:g}; the largest significant changes are numbered and named beside.",
                "contrast-figure")
    cols = [c for c in ("flywire_id", "name", "cell_type", "rate_a_hz", "rate_b_hz", "diff_hz", "ci_low_hz",
                        "ci_high_hz", "effect_size", "p_value", "q_value") if c in table]
    page.add(_table(table[cols], "contrast-table", max_rows=top, what="neurons"))


# =============================================================================== screen report
@dataclass
class ScreenTables:
    """A screen folder's description and tables (empty tables for files not written yet).

    Attributes
    ----------
    folder : Path
    info : dict
        ``screen.json``.
    conditions, readout, summary, effects : pandas.DataFrame
        The folder's tables (see :data:`SCREEN_COLUMNS`).
    """

    folder: Path
    info: dict[str, Any]
    conditions: pd.DataFrame
    readout: pd.DataFrame
    summary: pd.DataFrame
    effects: pd.DataFrame

    @property
    def synthetic(self) -> bool:
        """Whether the screen ran on a generated connectome."""
        data = self.info.get("data") if isinstance(self.info.get("data"), dict) else {}
        return bool(data.get("synthetic"))

    @property
    def running(self) -> bool:
        """Whether the screen was still running when its tables were read."""
        return str(self.info.get("status", "")).lower() != "complete"


def is_screen_folder(path: str | Path) -> bool:
    """Whether *path* is a screen's folder (holds ``screen.json``)."""
    return (Path(path) / "screen.json").is_file()


def read_screen(folder: str | Path) -> ScreenTables:
    """Read a screen folder's ``screen.json`` and tables.

    Raises
    ------
    DataError
        No ``screen.json``, or a file that cannot be read.
    """
    folder = Path(folder)
    info_path = folder / "screen.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"report: {folder} is not a screen folder (no screen.json); give a screen's --out folder "
                        "or a run's spike file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"report: {info_path} cannot be read as JSON ({exc})") from None
    if not isinstance(info, dict):
        raise DataError(f"report: {info_path} must hold a JSON object (got {type(info).__name__})")
    tables = {}
    for name, columns in SCREEN_COLUMNS.items():
        path = folder / f"{name}.parquet"
        if not path.is_file():
            tables[name] = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
            continue
        try:
            tables[name] = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"report: {path} cannot be read as parquet ({exc})") from None
        missing = [c for c in columns if c not in tables[name] and c != "experiment"]
        if missing:
            raise DataError(f"report: {path} lacks column(s) {missing}; was it written by brainfly screen?")
    return ScreenTables(folder, info, tables["conditions"], tables["readout"], tables["summary"], tables["effects"])


def _readout_names(readout: pd.DataFrame) -> pd.Series:
    """Display name of each readout row: its name, with the FlyWire ID where names repeat or are missing."""
    names = readout["name"].fillna("").astype(str)
    ids = readout["flywire_id"].astype(np.int64).astype(str)
    per_name = readout.assign(_n=names).groupby("_n")["flywire_id"].transform("nunique")
    return pd.Series(np.where(names == "", ids, np.where(per_name > 1, names + " " + ids, names)),
                     index=readout.index)


def _with_labels(frame: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("condition_id", "connectome", "kind", "label", "silence_target", "rate_hz")
            if c in conditions]
    if not len(frame):
        return frame.assign(**{c: pd.Series(dtype=object) for c in cols if c not in frame})
    return frame.merge(conditions[cols], on=["condition_id", "connectome"], how="left")


def screen_report(folder: str | Path, *, top: int = 40) -> str:
    """The HTML page of a screen folder (complete, or still running).

    Parameters
    ----------
    folder : str or Path
        The screen's folder (``screen.json`` and the tables of :data:`SCREEN_COLUMNS`).
    top : int
        Effects labelled and listed, conditions in the heatmap.

    Returns
    -------
    str
    """
    if top < 1:
        raise ValidationError(f"report: top must be >= 1 (got {top})")
    s = read_screen(folder)
    info = s.info
    name = str(info.get("name") or s.folder.name)
    page = _Page(f"brainfly screen report: {name}")
    if s.synthetic:
        page.banner("SYNTHETIC connectome: this screen ran on a generated network, not the fly's connectome. "
                    "Nothing on this page is a finding about the fly.", "synthetic")
    n_planned = info.get("n_conditions")
    n_done = int(s.summary[["condition_id", "connectome"]].drop_duplicates().shape[0]) if len(s.summary) else 0
    if s.running:
        page.banner(f"This screen is still running (status {info.get('status', 'unknown')!s}): "
                    f"{n_done:,} of {n_planned if n_planned is not None else '?'} conditions finished when this page "
                    "was made. It shows what was written so far.", "running")
    page.section("provenance", "Provenance")
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    hardware = info.get("hardware") if isinstance(info.get("hardware"), dict) else {}
    timings = info.get("timings") if isinstance(info.get("timings"), dict) else {}
    page.add(_kv_table([
        ("screen folder", str(s.folder)),
        ("screen", name),
        ("status", info.get("status", "unknown")),
        ("conditions", f"{n_done:,} finished of {n_planned if n_planned is not None else '?'}"),
        ("engine", info.get("engine", "not recorded")),
        ("engine options", ", ".join(f"{k}={v}" for k, v in (info.get("engine_options") or {}).items())),
        ("connectome", data.get("name", "not recorded")),
        ("connectome digest", data.get("digest", "not recorded")),
        ("synthetic connectome", "YES: generated, not the fly's" if s.synthetic else "no"),
        ("timings", ", ".join(f"{k} {_format(v)} s" if isinstance(v, (int, float)) else f"{k} {v}"
                              for k, v in timings.items())),
        ("hardware", ", ".join(f"{k}: {v}" for k, v in hardware.items())),
        ("run with brainfly", info.get("brainfly_version", "not recorded")),
        ("report by brainfly", __version__),
        ("report date", _now()),
    ]))
    if info.get("spec") is not None:
        page.add(f"<details><summary>screen specification</summary><pre id=\"spec\">"
                 f"{_esc(json.dumps(info['spec'], indent=2, sort_keys=True, default=str))}</pre></details>")

    page.section("conditions", "Conditions")
    summary = _with_labels(s.summary, s.conditions)
    cols = [c for c in ("condition_id", "connectome", "kind", "label", "n_spikes", "spikes_per_trial_s", "n_active",
                        "runaway", "runaway_trials", "sim_s") if c in summary]
    summary = summary[cols].sort_values(["connectome", "condition_id"], key=_real_first, kind="stable") \
        if len(summary) else summary[cols]
    page.add(_table(summary, "conditions-table", what="finished conditions"))

    readout = s.readout.copy()
    if len(readout):
        readout["readout"] = _readout_names(readout)
    readout = _with_labels(readout, s.conditions)
    page.section("readout", "Readout")
    if len(readout):
        cell = readout.assign(value=[f"{m:.2f} ± {e:.2f}" if np.isfinite(e) else f"{m:.2f}"
                                     for m, e in zip(readout["mean_hz"].astype(float), readout["sem_hz"].astype(float))])
        wide = cell.pivot_table(index=["condition_id", "connectome", "label"], columns="readout", values="value",
                                aggfunc="first", sort=False).reset_index()
        wide = wide.sort_values(["connectome", "condition_id"], key=_real_first, kind="stable")
        wide.columns.name = None
        page.text("Readout rate per condition, mean ± sem over trials (Hz).", "note")
        page.add(_table(wide, "readout-table", what="conditions"))
    else:
        page.add(_table(readout, "readout-table", what="readout rows yet"))

    _sweep_section(page, readout, s.synthetic)
    effects = _with_labels(s.effects.copy(), s.conditions)
    if len(effects):
        effects["readout"] = _readout_names(effects)
    _effects_section(page, effects, top, s.synthetic)
    return page.render()


def _real_first(column: pd.Series) -> pd.Series:
    """Sort key: the real connectome before its shuffles, else the column itself."""
    if column.name == "connectome":
        return column.astype(str).map(lambda c: ("0" if c == "real" else "1") + c)
    return column


def _synth(title: str, synthetic: bool) -> str:
    return title + ("  [SYNTHETIC connectome]" if synthetic else "")


def _sweep_section(page: _Page, readout: pd.DataFrame, synthetic: bool) -> None:
    if not len(readout) or "rate_hz" not in readout:
        return
    rated = readout[np.isfinite(readout["rate_hz"].astype(float)) & (readout["connectome"].astype(str) == "real")]
    if not len(rated):
        return
    page.section("rate-sweep", "Rate sweep")
    # the conditions that vary the rate alone; where every one also silences or activates (a product of
    # [[vary]] tables), one panel per readout with one line per other manipulation
    alone = rated[rated["kind"].astype(str) == "rate"] if "kind" in rated else rated
    sweep = (alone if len(alone) else rated).assign(rate_hz=lambda f: f["rate_hz"].astype(float))
    if len(alone):
        sweep = sweep.assign(line=sweep["readout"].astype(str))[["line", "rate_hz", "mean_hz", "sem_hz"]]
    else:
        other = [sweep[c].fillna("").astype(str) for c in ("silence_target", "activate_target") if c in sweep]
        what = np.where(other[0] != "", "silence " + other[0], "") if other else np.full(len(sweep), "")
        if len(other) > 1:
            what = np.where(other[1] != "", np.char.add(what.astype(str), " activate " + other[1]), what)
        sweep = sweep.assign(panel=sweep["readout"].astype(str), line=np.where(what == "", "(none)", what))
        sweep = sweep[["panel", "line", "rate_hz", "mean_hz", "sem_hz"]]
    page.figure(plot_rate_sweep(sweep, title=_synth("readout rate vs stimulus rate (real connectome)", synthetic)),
                "Readout rate against the stimulus rate, one line per readout neuron (or, where the rate is varied "
                "together with another manipulation, one panel per readout and one line per manipulation); the band "
                "is mean ± 1.96 sem over trials (95%).", "rate-sweep-figure")


def _effects_section(page: _Page, effects: pd.DataFrame, top: int, synthetic: bool) -> None:
    page.section("effects", "Effects")
    if not len(effects):
        page.text("No effects yet (effects.parquet is not written, or no condition besides the base has finished).",
                  "note")
        return
    real = effects[effects["connectome"].astype(str) == "real"] if (effects["connectome"] == "real").any() \
        else effects
    n_sig = int((real["q_value"].astype(float).fillna(1.0) < ALPHA).sum())
    page.text(f"{len(real):,} condition x readout effects on the real connectome; {n_sig:,} with q < {ALPHA:g} "
              "(Benjamini-Hochberg over all conditions and readouts).", "note")
    page.figure(plot_effects(real.assign(name=real["readout"]), x="diff_hz", alpha=ALPHA, labels=min(top, 12),
                             title=_synth("effects of the conditions on the readouts", synthetic)),
                f"Volcano plot: rate change against the base condition vs -log10 q; red: q < {ALPHA:g}; the most "
                "significant points are numbered and listed beside as 'condition · readout'.", "effects-figure")
    ranked = real.assign(_q=real["q_value"].astype(float).fillna(1.0), _d=-real["diff_hz"].astype(float).abs()) \
        .sort_values(["_q", "_d"], kind="stable")
    cols = [c for c in ("condition_id", "label", "name", "flywire_id", "base_mean_hz", "mean_hz", "diff_hz",
                        "ci_low_hz", "ci_high_hz", "effect_size", "p_value", "q_value") if c in ranked]
    page.add(_table(ranked[cols], "effects-table", max_rows=top, what="effects"))

    if real["readout"].nunique() > 1:
        page.section("heatmap", "Effects by condition and readout")
        strongest = (real.assign(_a=real["diff_hz"].astype(float).abs()).groupby("label")["_a"].max()
                     .sort_values(ascending=False).index[:top])
        matrix = real[real["label"].isin(strongest)].pivot_table(index="label", columns="readout", values="diff_hz",
                                                                 aggfunc="mean")
        matrix = matrix.reindex(index=[c for c in strongest if c in matrix.index])
        page.figure(plot_effect_heatmap(matrix, title=_synth(f"rate change vs base (Hz):\nthe {len(matrix)} "
                                                             "conditions with the largest effect", synthetic)),
                    "Rate change of each readout (columns) in each condition (rows) against the base; red: up, "
                    "blue: down.", "heatmap-figure")

    if (effects["connectome"].astype(str) != "real").any():
        page.section("shuffle", "Real vs shuffled connectomes")
        conn = effects["connectome"].astype(str)
        per = (effects.assign(_sig=effects["q_value"].astype(float).fillna(1.0) < ALPHA,
                              _abs_d=effects["effect_size"].astype(float).abs(),
                              _abs_diff=effects["diff_hz"].astype(float).abs())
               .groupby(conn)
               .agg(effects=("_sig", "size"), significant=("_sig", "sum"), median_abs_effect_size=("_abs_d", "median"),
                    median_abs_diff_hz=("_abs_diff", "median")))
        per = per.reset_index(names="connectome")
        per = per.sort_values("connectome", key=_real_first, kind="stable")
        page.figure(plot_shuffle_control(effects, value="effect_size", alpha=ALPHA,
                                         title=_synth("effects on the real connectome vs shuffled ones (the null)",
                                                      synthetic)),
                    "Left: distribution of |effect size| over all condition x readout pairs, real connectome vs its "
                    f"shuffles pooled. Right: fraction of effects with q < {ALPHA:g} per connectome.", "shuffle-figure")
        page.add(_table(per, "shuffle-table", what="connectomes"))


# =============================================================================== the file
def write_report(path: str | Path, out: str | Path, versus: str | Path | None = None, data: Any = None,
                 top: int = 40) -> Path:
    """Write the HTML report of a run's spike file or of a screen folder.

    Parameters
    ----------
    path : str or Path
        A run's spike file (``*.parquet``; its ``*_front.parquet`` beside it is used when
        present) or a screen's folder (holding ``screen.json``).
    out : str or Path
        The HTML file to write (atomically; folders created).
    versus : str or Path, optional
        A second run's spike file: adds the contrast of *path* (A) with it (B). Runs only.
    data : Connectome, str or Path, optional
        The run's connectome (object, folder or dataset name) for path lengths; checked
        against the digest the run records.
    top : int
        Neurons, cell types and effects shown.

    Returns
    -------
    Path
        *out*.

    Raises
    ------
    ValidationError
        *out* is a folder, *top* < 1, or *versus* given with a screen folder.
    DataError
        *path* is neither a spike file nor a screen folder, a file cannot be read, or
        *data* is not the run's connectome.
    """
    path, out = Path(path), Path(out)
    if out.is_dir():
        raise ValidationError(f"report --out {out}: is a folder; give a file name such as {out / 'report.html'}")
    if path.is_dir():
        if versus is not None:
            raise ValidationError("report --versus: compares two runs' spike files; a screen folder holds its own "
                                  "contrasts (effects.parquet)")
        text = screen_report(path, top=top)
    elif path.is_file():
        result = load_run(path)
        other = load_run(versus) if versus is not None else None
        text = run_report(result, source=path, versus=other, versus_source=versus, data=data, top=top)
    else:
        raise DataError(f"report: {path} does not exist; give a run's spike file (.parquet) or a screen folder")
    return atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
