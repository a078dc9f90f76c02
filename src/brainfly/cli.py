"""Command-line interface: ``brainfly run | demo | engines | data | lookup | schedule | bench | compare``.

A thin shell over the library: it parses, calls :func:`brainfly.run` (or the library
function of each command), and prints. A :class:`~brainfly.errors.BrainflyError` is
printed as one clear line (exit status 2) instead of a traceback. Each command's module
is imported when that command runs (the dispatch table :data:`COMMANDS`), so that
``brainfly run`` does not pay for the benchmark grid's or the comparison's imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
from pathlib import Path
import re
import sys
from typing import Any, Callable, Sequence
import warnings

from ._io import digest_text
from ._version import __version__
from .errors import BrainflyError, ValidationError

__all__ = ["main", "build_parser", "parse_stimulus", "experiment_from_args", "default_output", "COMMANDS"]

log = logging.getLogger("brainfly")

DEFAULT_ENGINE = "event"


# -------------------------------------------------------------------- argument helpers
def parse_stimulus(text: str) -> tuple[list[str], float]:
    """Parse ``IDS@HZ`` (IDS comma-separated FlyWire IDs or names) into (specs, rate_hz).

    >>> parse_stimulus("P9,720575940660219265@100")
    (['P9', '720575940660219265'], 100.0)
    """
    if "@" not in text:
        raise ValidationError(f"--stimulate {text!r}: expected IDS@HZ, e.g. 720575940624963786,P9@200")
    ids, _, rate = text.rpartition("@")
    specs = [s.strip() for s in ids.split(",") if s.strip()]
    if not specs:
        raise ValidationError(f"--stimulate {text!r}: no neurons before '@'")
    try:
        rate_hz = float(rate.lower().removesuffix("hz"))
    except ValueError:
        raise ValidationError(f"--stimulate {text!r}: rate {rate!r} is not a number of Hz") from None
    if not math.isfinite(rate_hz) or rate_hz < 0:
        raise ValidationError(f"--stimulate {text!r}: rate_hz must be a finite number of Hz >= 0 (got {rate!r}), "
                              "e.g. P9@100")
    return specs, rate_hz


def _split_ids(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _add_data_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="folder with the canonical Completeness + Connectivity files, or a dataset name "
                        "(flywire-783, flywire-630, synthetic); default: $BRAINFLY_DATA, else the best available")


def _add_experiment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", nargs="?", default=None,
                   help="built-in experiment (sugar, p9) or an experiment TOML file; options below override it")
    p.add_argument("--engine", default=DEFAULT_ENGINE, help=f"simulator (default {DEFAULT_ENGINE}); see `brainfly engines`")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                   help="engine option, e.g. device=cuda, dtype=float32, n_threads=2, mode=standalone")
    _add_data_argument(p)
    p.add_argument("--stimulate", action="append", default=[], metavar="IDS@HZ",
                   help="drive neurons with Poisson input (repeatable: one stimulus set each)")
    p.add_argument("--silence", default=None, metavar="IDS", help="comma-separated neurons to silence")
    p.add_argument("--silence-mode", choices=("outgoing", "both"), default=None,
                   help="outgoing (the paper's code, default) or both (also incoming synapses)")
    p.add_argument("--t-run", type=float, default=None, help="simulated seconds per trial (default 1)")
    p.add_argument("--n-trials", type=int, default=None, help="number of trials (default 30 for built-ins)")
    p.add_argument("--seed", type=int, default=None, help="seed of the Poisson input (default 0)")
    p.add_argument("--input-schedule", default=None, metavar="FILE",
                   help="explicit input kicks (parquet/CSV: trial, flywire_id, step) replacing Poisson draws")
    p.add_argument("--name", default=None, help="experiment name written to exp_name")


def _engine_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValidationError(f"--engine-option {pair!r}: expected KEY=VALUE, e.g. n_threads=2")
        key, value = pair.split("=", 1)
        if not key.strip():
            raise ValidationError(f"--engine-option {pair!r}: no option name before '='; expected KEY=VALUE, "
                                  "e.g. n_threads=2")
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        if value.lower() in ("true", "false"):
            parsed = value.lower() == "true"
        out[key.strip().replace("-", "_")] = parsed
    return out


def experiment_from_args(args: argparse.Namespace) -> Any:
    """Build the Experiment from a built-in/TOML base plus command-line overrides."""
    from .experiment import Experiment, StimulusSet, load_experiment

    if args.experiment:
        base = load_experiment(args.experiment)
    else:
        if not args.stimulate and not args.input_schedule:
            raise ValidationError("brainfly run: give an experiment (sugar, p9, FILE.toml), "
                                  "--stimulate IDS@HZ or --input-schedule FILE")
        base = None
    changes: dict[str, Any] = {}
    if args.stimulate and args.input_schedule:
        raise ValidationError("--stimulate and --input-schedule given together: the schedule's kicks replace "
                              "Poisson input at set rates; give one of them")
    if args.input_schedule:
        changes["stimuli"] = ()  # the schedule replaces the base experiment's stimulus sets
    if args.stimulate:
        sets = []
        for k, text in enumerate(args.stimulate):
            specs, rate = parse_stimulus(text)
            sets.append(StimulusSet(tuple(specs), rate, ",".join(specs)))
        changes["stimuli"] = tuple(sets)
    if args.silence is not None:
        changes["silenced"] = tuple(_split_ids(args.silence))
    for field, value in (("silence_mode", args.silence_mode), ("t_run", args.t_run),
                         ("n_trials", args.n_trials), ("seed", args.seed),
                         ("input_schedule", args.input_schedule), ("name", args.name)):
        if value is not None:
            changes[field] = value
    if base is None:
        changes.setdefault("name", "custom")
        changes.setdefault("n_trials", 1)
        return Experiment(**changes)
    return base.with_(**changes) if changes else base


def default_output(engine: str, experiment: Any) -> Path:
    """``output/{engine}_{name}-{digest}.parquet``: runs that differ in anything get different files."""
    import json

    digest = digest_text(json.dumps(experiment.to_dict(), sort_keys=True, default=str))[:8]
    # the name is the user's text: only letters, digits, '.', '-' and '_' go into the file name
    # (never a folder separator or '..': the files stay in output/)
    safe = re.sub(r"[^\w.-]+", "_", f"{engine}_{experiment.name}", flags=re.ASCII).strip("._") or "run"
    return Path("output") / f"{safe}-{digest}.parquet"


def _print_outputs(result: Any) -> None:
    files = result.meta.get("outputs") or {}
    if files.get("spikes"):
        print(f"spikes written to {files['spikes']}; per-neuron rates to {files['rates']}")
    if files.get("front"):
        print(f"propagation front (first-spike latency of every neuron reached) in {files['front']}")


def _synthetic_notice(result: Any) -> None:
    if result.synthetic:
        print("NOTE: this ran on the built-in SYNTHETIC connectome (the real FlyWire connectivity is not\n"
              "      cached here): figures below are NOT the fly's. Get the real data with\n"
              "      `brainfly data download flywire-783`, or give --data FOLDER.\n")


# -------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    """``brainfly run``: one experiment on one engine, spikes to parquet, summary to stdout."""
    from .runner import run

    experiment = experiment_from_args(args)
    options = _engine_options(args.engine_option)
    out = Path(args.out) if args.out else default_output(args.engine, experiment)
    result = run(experiment, data=args.data, engine=args.engine, out=out, resume=not args.no_resume,
                 overwrite=args.overwrite, progress=not args.quiet, **options)
    if args.data is None and not os.environ.get("BRAINFLY_DATA"):
        _synthetic_notice(result)  # the user did not choose: say what was chosen and how to get the real data
    print(result.summary())
    _print_outputs(result)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``brainfly demo``: the sugar-GRN experiment on the best connectome available."""
    from .connectome import best_available_dataset, load_connectome
    from .experiment import builtin_experiment
    from .runner import run

    data = args.data or os.environ.get("BRAINFLY_DATA") or best_available_dataset()
    if data == "synthetic":
        # generating the brain and compiling the kernels, when they happen, say so themselves
        print(f"brainfly demo: the sugar experiment (21 sugar GRNs at 200 Hz, {args.n_trials} trials x 1 s) "
              "on the full-size SYNTHETIC brain", file=sys.stderr)
    net = load_connectome(data, progress=True)
    experiment = builtin_experiment("sugar").with_(n_trials=args.n_trials)
    result = run(experiment, data=net, engine=args.engine, out=args.out, overwrite=True, progress=True)
    _synthetic_notice(result)
    print(result.summary())
    rates = result.rates(names=True)
    mn9 = rates[rates["name"] == "MN9"] if "name" in rates else rates.iloc[0:0]
    print("MN9 (proboscis extension motor neuron): " +
          (", ".join(f"{row.flywire_id}: {row.mean_hz:.1f} Hz" for row in mn9.itertuples()) or "silent"))
    sim_s = result.meta.get("timings", {}).get("sim_s")
    if sim_s:
        print(f"simulated {result.n_trials * result.t_run:g} trial-seconds in {sim_s:.3f} s of simulation "
              f"({result.n_trials * result.t_run / sim_s:,.0f}x real time) with engine {args.engine}; "
              f"{result.meta.get('wall_s', 0):.2f} s for the whole run")
    _print_outputs(result)
    return 0


def cmd_engines(args: argparse.Namespace) -> int:
    """``brainfly engines``: every engine, whether it runs here on which devices, and why not."""
    from .engines.base import engine_class, engine_names
    from .errors import UnknownEngineError

    for name in engine_names():
        try:
            engine = engine_class(name)()
        except (UnknownEngineError, ValidationError) as exc:
            print(f"{name:<18} cannot be loaded: {exc}")
            continue
        ok, reason = engine.is_available()
        exact = "exact" if engine.exact else "statistical"
        print(f"{name:<18} {'available' if ok else 'not available':<13} {exact:<11} {engine.description}")
        for device, (dev_ok, why) in engine.devices().items():
            print(f"{'':<18}   {device:<6} {'yes' if dev_ok else 'no'}" + (f"  ({why})" if why and not dev_ok else ""))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``brainfly data info|download``: where the data is and what it holds."""
    from . import connectome as cn

    if args.action == "download":
        folder = cn.download_dataset(args.dataset, progress=True)
        print(f"{args.dataset}: files are in {folder}")
        return 0
    net = cn.load_connectome(args.data, progress=True)
    print(f"connectome {net.label}")
    print(f"  neurons      {net.n_neurons:>12,}")
    print(f"  connections  {net.n_connections:>12,}")
    print(f"  synapses     {net.n_synapses:>12,}")
    print(f"  inhibitory   {float((net.weight < 0).mean()):>12.1%} of connections")
    print(f"  digest       {net.content_digest[:16]}")
    print(f"  cache folder {cn.cache_dir()}")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    """``brainfly lookup NAME...``: resolve names/IDs to FlyWire IDs, names and annotations."""
    from .connectome.query import lookup

    for spec in args.names:
        table = lookup([int(spec) if spec.isdigit() else spec], data=args.data, progress=not args.quiet)
        print(f"{spec}: {len(table)} neuron(s)")
        for row in table.itertuples():
            print(f"  {row.flywire_id}  idx {row.idx}  {row.name}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    """``brainfly schedule``: draw an experiment's Poisson input and write it as a schedule file."""
    from .connectome import load_connectome
    from .engines.base import prepare

    experiment = experiment_from_args(args)
    net = load_connectome(args.data, progress=not args.quiet)
    sim = prepare(net, experiment)
    sched = sim.kicks(range(experiment.n_trials))
    sched.write(args.out, net.flywire_ids, synthetic=net.synthetic)
    print(f"{sched.n_kicks} kicks on {sched.activated_idx.size} neurons in {experiment.n_trials} trial(s) "
          f"written to {args.out}")
    return 0


#: Commands whose arguments and code live in their own module: name -> (module, add_arguments, run, help).
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "bench": ("brainfly.bench.command", "add_bench_arguments", "run_bench_from_args",
              "benchmark grid of engines x durations x trials"),
    "compare": ("brainfly.compare_command", "add_compare_arguments", "run_compare_from_args",
                "compare engines' saved spikes with Brian2's"),
    "screen": ("brainfly.screen_command", "add_screen_arguments", "run_screen_from_args",
               "a screen: silence, activate or sweep many conditions, with effects against the base"),
    "contrast": ("brainfly.contrast_command", "add_contrast_arguments", "run_contrast_from_args",
                 "rates of two runs neuron by neuron: difference, Welch's t, q values"),
    "report": ("brainfly.report_command", "add_report_arguments", "run_report_from_args",
               "self-contained HTML report of a run, a run --versus another, or a screen folder"),
    "install": ("brainfly.install_command", "add_install_arguments", "run_install_from_args",
                "build once per machine: event-kernel (the event engine's compiled kernel), "
                "nestgpu (NEST GPU with brainfly's model)"),
}


def _lazy_command(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), func)(args)
    return call


class UsageError(ValidationError):
    """A command line that argparse cannot parse (unknown option, a value of the wrong type)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``error:`` line (exit status 2), not usage text."""

    def error(self, message: str) -> Any:  # argparse's own prints the usage and exits
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``brainfly`` command.

    The arguments of ``bench`` and ``compare`` are declared by their modules, imported
    only when *argv* names that command (or when it is None).
    """
    parser = _Parser(
        prog="brainfly",
        description="Whole-brain LIF simulation of the adult fruit fly (FlyWire connectome, Shiu et al. 2024).",
    )
    parser.add_argument("--version", action="version", version=f"brainfly {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (INFO and library warnings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run an experiment on one engine")
    _add_experiment_arguments(p)
    p.add_argument("--out", default=None,
                   help="spike parquet (default output/{engine}_{experiment}-{digest}.parquet)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished result at --out")
    p.add_argument("--no-resume", action="store_true", help="start again even if finished trials exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the sugar-GRN experiment on the best connectome available")
    _add_data_argument(p)
    p.add_argument("--engine", default=DEFAULT_ENGINE)
    p.add_argument("--n-trials", type=int, default=30)
    p.add_argument("--out", default="output/demo_sugar.parquet")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("engines", help="list engines, their devices and whether they run here")
    p.set_defaults(func=cmd_engines)

    p = sub.add_parser("data", help="show or download connectome data")
    p.add_argument("action", choices=("info", "download"))
    p.add_argument("dataset", nargs="?", default="flywire-783", help="for download: flywire-783 or flywire-630")
    _add_data_argument(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("lookup", help="resolve neuron names or IDs")
    p.add_argument("names", nargs="+")
    _add_data_argument(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_lookup)

    p = sub.add_parser("schedule", help="write an experiment's Poisson input as an input-schedule file")
    _add_experiment_arguments(p)
    p.add_argument("--out", required=True, help="schedule file (.parquet or .csv)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_schedule)

    wanted = None if argv is None else set(argv)
    for name, (module, add, run, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text)
        if wanted is None or name in wanted:
            getattr(importlib.import_module(module), add)(p)
        p.set_defaults(func=_lazy_command(module, run))
    return parser


def _configure_logging(verbose: bool) -> None:
    """WARNING and above from brainfly by default (INFO with -v); other libraries' warnings only with -v."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        # e.g. Brian2's import warns about setuptools' pkg_resources: not the user's business
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(?!brainfly)")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        logging.getLogger("brian2").setLevel(logging.ERROR)
        # what a first run does that takes time (compiling the event kernels once, building
        # the compiled one in the background) is said
        logging.getLogger("brainfly.engines.event").setLevel(logging.INFO)
        logging.getLogger("brainfly.engines._event_aot").setLevel(logging.INFO)
        logging.getLogger("numba").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brainfly`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except BrainflyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished trials are kept and a new run with the same arguments resumes", file=sys.stderr)
        return 130
