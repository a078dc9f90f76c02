"""Command line of the comparison: ``brainfly compare`` and ``code/compare_ground_truth.py``.

Parses the options, finds neuron names, calls :mod:`brainfly.compare`, prints one line per
comparison, writes the JSON document and the figure (:func:`brainfly.plots.plot_comparisons`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
import sys
from typing import Any, Iterable, Mapping

import numpy as np

from .compare import (
    REFERENCE_ENGINES, Comparison, compare_results, compare_saved_runs, comparison_document, fill_names,
    write_comparison_json,
)
from .connectome import Connectome, load_connectome
from .connectome.lookup import PAPER_ALIASES, attach_annotations, neuron_names
from .errors import BrainflyError
from .plots import plot_comparisons
from .results import SpikeResult
from .store import DEFAULT_RESULTS_DIR, format_t_run, load_run

__all__ = ["add_compare_arguments", "run_compare_from_args", "paper_alias_names", "names_from_data",
           "names_from_annotations"]

log = logging.getLogger(__name__)


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``brainfly compare`` to an argparse parser (returns it)."""
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR),
                        help="folder of saved runs {engine}_{experiment}_t{T}_n{N}.parquet (default: %(default)s)")
    parser.add_argument("--experiment", default=None, help="only this experiment (default: all found)")
    parser.add_argument("--t-run", "--t_run", dest="t_run", type=float, nargs="+", default=None,
                        help="only these durations, s (default: all found)")
    parser.add_argument("--n-run", "--n_run", dest="n_run", type=int, nargs="+", default=None,
                        help="only these trial counts (default: all found)")
    parser.add_argument("--engines", nargs="+", default=None, help="only these candidate engines")
    parser.add_argument("--reference", default=None,
                        help=f"reference engine label (default: the first found of {list(REFERENCE_ENGINES)})")
    parser.add_argument("--files", nargs=2, metavar=("REFERENCE", "CANDIDATE"), default=None,
                        help="compare two spike files directly (e.g. the paper's own parquet output)")
    parser.add_argument("--data", default=None,
                        help="connectome (folder or dataset name) for neuron names; optional")
    parser.add_argument("--annotations", default=None, metavar="DIR",
                        help="folder of FlyWire annotation tables (Codex classification / consolidated cell "
                             "types, or the supplemental annotations) for neuron names; default: the data and "
                             "cache folders")
    parser.add_argument("--top", type=int, default=20, help="deviating neurons to list (default: %(default)s)")
    parser.add_argument("--out", default="data/ground-truth-comparison.json",
                        help="JSON output (default: %(default)s)")
    parser.add_argument("--figure", default=None,
                        help="figure output (default: beside the JSON, .png)")
    parser.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    return parser


# =============================================================================== names
def paper_alias_names() -> dict[int, str]:
    """The paper's neuron names (MN9, P9, sugar_GRN, ...) by FlyWire ID."""
    return {int(fid): name for name, ids in PAPER_ALIASES.items() for fid in ids}


def names_from_data(data: str | None) -> dict[int, str]:
    """Neuron names: the paper's, plus those of the connectome *data* (folder or dataset name).

    Names are decoration: a connectome that cannot be loaded is logged and left out.
    """
    names = paper_alias_names()
    if not data:
        return names
    try:
        more = neuron_names(load_connectome(data))
    except (BrainflyError, OSError) as exc:
        log.warning("neuron names of %s unavailable (%s); listing FlyWire IDs only", data, exc)
        return names
    names.update({int(k): str(v) for k, v in more.items() if v})
    return names


def names_from_annotations(flywire_ids: Iterable[int], folder: str | None) -> dict[int, str]:
    """Cell-type names of *flywire_ids* from annotation tables, without loading any connectivity.

    Parameters
    ----------
    flywire_ids : iterable of int
    folder : str, optional
        Folder of annotation tables; default: the data and cache folders.
    """
    ids = np.unique(np.asarray(list(flywire_ids), dtype=np.int64))
    if ids.size == 0:
        return {}
    net = Connectome.from_edges(ids, [], [], [], name="names")
    try:
        attach_annotations(net, dirs=None if folder is None else [folder])
        return {int(k): str(v) for k, v in neuron_names(net).items()}
    except (BrainflyError, OSError, ValueError) as exc:  # names are decoration
        log.debug("no neuron names from annotations: %s", exc)
        return {}


# =============================================================================== the command
def _compare_files(args: argparse.Namespace, names: Mapping[int, str]
                   ) -> tuple[list[Comparison], dict[str, SpikeResult]]:
    ref_path, cand_path = (Path(p) for p in args.files)
    t_run = args.t_run[0] if args.t_run else None
    ref = load_run(ref_path, t_run, engine=args.reference or ref_path.stem)
    cand = load_run(cand_path, t_run, engine=cand_path.stem)
    comp = compare_results(ref, cand, names=names, top=args.top, t_run=t_run)
    comp.reference_file, comp.candidate_file = str(ref_path), str(cand_path)
    return [comp], {str(ref_path): ref, str(cand_path): cand}


def _draw(comparisons: list[Comparison], loaded: Mapping[str, SpikeResult], figure: Path) -> str | None:
    """The figure (rate scatters, raster of the first divergence); None when it could not be drawn."""
    diverged = next((c for c in comparisons if c.first_divergence), None)
    raster = None
    if diverged is not None and diverged.reference_file in loaded and diverged.candidate_file in loaded:
        raster = (diverged, loaded[diverged.reference_file], loaded[diverged.candidate_file])
    try:
        return str(plot_comparisons(comparisons, figure, raster=raster))
    except (OSError, ValueError, RuntimeError) as exc:  # a figure failure must not lose the JSON
        log.warning("comparison figure not drawn: %s", exc)
        print(f"warning: comparison figure not drawn: {exc}", file=sys.stderr)
        return None


def run_compare_from_args(args: argparse.Namespace) -> int:
    """Run ``brainfly compare`` from parsed arguments; returns the exit status.

    0: comparisons written; 1: nothing to compare (no reference or no runs found).
    """
    names = names_from_data(args.data)
    out = Path(args.out)
    figure = None if args.no_figure else Path(args.figure) if args.figure else out.with_suffix(".png")
    missing: list[dict[str, Any]] = []
    if args.files:
        comparisons, loaded = _compare_files(args, names)
    else:
        if not Path(args.results_dir).is_dir():
            print(f"brainfly compare: results folder {args.results_dir} does not exist; "
                  "run the benchmark first (python main.py or brainfly bench)", file=sys.stderr)
            return 1
        comparisons, missing, loaded = compare_saved_runs(
            args.results_dir, experiment=args.experiment, t_runs=args.t_run, n_runs=args.n_run,
            engines=args.engines, reference=args.reference, names=names, top=args.top)
    wanted = {row["flywire_id"] for c in comparisons for row in c.top_deviating if not row.get("name")}
    wanted |= {c.first_divergence["flywire_id"] for c in comparisons if c.first_divergence}
    if wanted:
        fill_names(comparisons, names_from_annotations(wanted, args.annotations))
    for c in comparisons:
        print(c.summary())
    for m in missing:
        print(f"not compared: {m['engine']} [{m['experiment']} t={format_t_run(m['t_run'])}s "
              f"n={m['n_run']}]: {m['reason']}")
    fig_written = _draw(comparisons, loaded, figure) if figure is not None and comparisons else None
    write_comparison_json(out, comparison_document(comparisons, missing, figure=fig_written))
    print(f"wrote {out}" + (f" and {fig_written}" if fig_written else ""))
    if not comparisons:
        print("brainfly compare: nothing compared (no candidate run with a reference run of the same "
              f"experiment, t_run and n_run in {args.results_dir})", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Stand-alone entry point (used by ``code/compare_ground_truth.py``)."""
    parser = argparse.ArgumentParser(prog=prog, description="compare engines' saved spikes with Brian2's")
    add_compare_arguments(parser)
    return run_compare_from_args(parser.parse_args(argv))
