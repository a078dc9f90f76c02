"""Command-line interface: ``brainfly run | demo | engines | data | lookup | schedule | bench | compare``.

The CLI validates everything at the boundary (experiment, neurons, engine, files)
before any simulation work; a :class:`~brainfly.errors.BrainflyError` is printed as one
clear line (exit status 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from pathlib import Path
import sys
import time
from typing import Any, Sequence

from .errors import BrainflyError, ValidationError

__all__ = ["main", "build_parser", "parse_stimulus", "run_experiment"]

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
            raise ValidationError(f"--engine-option {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
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
    if args.stimulate:
        sets = []
        for k, text in enumerate(args.stimulate):
            specs, rate = parse_stimulus(text)
            sets.append(StimulusSet(tuple(specs), rate, f"set{k}"))
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


def _load_connectome(data: str | None, progress: bool) -> Any:
    from .connectome import load_connectome

    return load_connectome(data, progress=progress)


def _fingerprint(experiment: Any, connectome: Any, engine: str, options: dict[str, Any]) -> str:
    blob = json.dumps({"experiment": experiment.to_dict(), "connectome": connectome.name,
                       "n_neurons": connectome.n_neurons, "n_connections": connectome.n_connections,
                       "engine": engine, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_experiment(engine_name: str, connectome: Any, experiment: Any, out: Path | None, *,
                   engine_options: dict[str, Any] | None = None, resume: bool = True,
                   progress: bool = True, chunk_trials: int | None = None) -> Any:
    """Run an experiment trial chunk by trial chunk, writing each chunk atomically.

    Finished chunks live in ``<out>.parts/`` next to the output; an interrupted run
    started again with the same arguments resumes from them (nothing computed is lost).
    The parts are merged into *out* at the end and removed.
    """
    from .engines import get_engine
    from ._io import atomic_write
    from .results import SpikeResult, merge_results

    options = dict(engine_options or {})
    engine = get_engine(engine_name, **options)
    n_trials = experiment.n_trials
    if chunk_trials is None:
        chunk_trials = max(1, int(getattr(engine, "trials_per_chunk", 8)))
    chunks = [list(range(k, min(k + chunk_trials, n_trials))) for k in range(0, n_trials, chunk_trials)]
    parts_dir = out.with_name(out.name + ".parts") if out is not None else None
    fingerprint = _fingerprint(experiment, connectome, engine_name, options)
    done: list[SpikeResult] = []
    if parts_dir is not None:
        stamp = parts_dir / "RUN.json"
        if parts_dir.exists() and resume and stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            for part in sorted(parts_dir.glob("trials-*.parquet")):
                done.append(SpikeResult.read_parquet(part, connectome.flywire_ids))
            if done:
                log.info("resuming: %d trial(s) already done in %s", sum(p.n_trials for p in done), parts_dir)
        else:
            if parts_dir.exists():
                for f in parts_dir.glob("*"):
                    f.unlink()
            parts_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(stamp, lambda tmp: tmp.write_text(json.dumps({"fingerprint": fingerprint})))
    finished = {k for p in done for k in p.trials}
    todo = [c for c in chunks if not set(c) <= finished]
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def _run_chunks(advance: Any) -> None:
        for chunk in todo:
            result = engine.run(connectome, experiment, trials=chunk)
            for key, value in (result.meta.get("timings") or {}).items():
                timings[key] = timings.get(key, 0.0) + float(value)
            if parts_dir is not None:
                result.write_parquet(parts_dir / f"trials-{chunk[0]:05d}-{chunk[-1]:05d}.parquet")
            done.append(result)
            advance(len(chunk))

    if progress and todo:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn(f"[bold]{engine_name}[/] {experiment.name}"), BarColumn(),
                      MofNCompleteColumn(), TextColumn("trials"), TimeRemainingColumn(),
                      transient=True, console=_stderr_console()) as bar:
            task = bar.add_task("trials", total=n_trials, completed=len(finished))
            _run_chunks(lambda n: bar.advance(task, n))
    else:
        _run_chunks(lambda n: None)
    result = merge_results(done)
    result.meta = dict(result.meta)
    result.meta["timings"] = timings or result.meta.get("timings", {})
    result.meta["wall_s"] = time.perf_counter() - t0
    result.meta["experiment"] = experiment.to_dict()
    result.meta["engine_options"] = options
    if out is not None:
        result.write_parquet(out)
        if parts_dir is not None and parts_dir.exists():
            for f in parts_dir.glob("*"):
                f.unlink()
            parts_dir.rmdir()
    return result


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _stimulated_idx(connectome: Any, experiment: Any) -> Any:
    """Model indices of the driven neurons (schedule neurons when a schedule drives them)."""
    if experiment.input_schedule is not None:
        from .schedule import InputSchedule

        return InputSchedule.read(experiment.input_schedule, connectome).activated_idx
    return experiment.resolve(connectome).activated_idx


def _names(connectome: Any) -> dict[int, str]:
    try:
        from .connectome.lookup import neuron_names
    except ImportError:
        return {}
    return neuron_names(connectome)


# -------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    """``brainfly run``: one experiment on one engine, spikes to parquet, summary to stdout."""
    experiment = experiment_from_args(args)
    options = _engine_options(args.engine_option)
    from .engines import get_engine

    get_engine(args.engine, **options)  # unknown engine fails before loading data
    connectome = _load_connectome(args.data, progress=not args.quiet)
    experiment.resolve(connectome)  # unknown neurons fail before any work
    out = Path(args.out) if args.out else Path("output") / f"{args.engine}_{experiment.name}.parquet"
    result = run_experiment(args.engine, connectome, experiment, out, engine_options=options,
                            resume=not args.no_resume, progress=not args.quiet)
    names = _names(connectome)
    stimulated = _stimulated_idx(connectome, experiment)
    rates_path = out.with_name(out.stem + "_rates.csv")
    from ._io import atomic_write

    rates = result.rates(names)
    atomic_write(rates_path, lambda tmp: rates.to_csv(tmp, index=False))
    print(result.summary(names, stimulated_idx=stimulated))
    print(f"spikes written to {out}; per-neuron rates to {rates_path}")
    front = result.propagation_front()
    if front is not None:
        front_path = out.with_name(out.stem + "_front.parquet")
        atomic_write(front_path, lambda tmp: front.to_parquet(tmp, index=False))
        print(f"propagation front (first spike latency of every neuron reached) in {front_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``brainfly demo``: the sugar-GRN experiment on the best connectome available."""
    from .connectome import best_available_dataset
    from .experiment import builtin_experiment

    data = args.data or os.environ.get("BRAINFLY_DATA") or best_available_dataset()
    connectome = _load_connectome(data, progress=True)
    if connectome.synthetic:
        print("NOTE: the real FlyWire connectivity is not available here (not cached and not downloadable);\n"
              "      running on the built-in SYNTHETIC connectome: figures below are NOT the fly's.\n"
              "      Get the real data with `brainfly data download flywire-783` or --data FOLDER.\n")
    experiment = builtin_experiment("sugar").with_(n_trials=args.n_trials)
    out = Path(args.out)
    result = run_experiment(args.engine, connectome, experiment, out, progress=True)
    names = _names(connectome)
    print(result.summary(names, stimulated_idx=_stimulated_idx(connectome, experiment)))
    mn9 = [i for i, n in names.items() if n == "MN9"]
    if mn9:
        rates = result.rates(names)
        r = rates[rates.flywire_id.isin(mn9)]
        print("MN9 (proboscis extension motor neuron): " +
              (", ".join(f"{row.flywire_id}: {row.mean_hz:.1f} Hz" for row in r.itertuples()) or "silent"))
    sim_s = result.meta.get("timings", {}).get("sim_s")
    if sim_s:
        print(f"simulated {result.n_trials * result.t_run:g} trial-seconds in {sim_s:.3f} s of simulation "
              f"({result.n_trials * result.t_run / sim_s:,.0f}x real time) with engine {args.engine}")
    print(f"spikes written to {out}")
    return 0


def cmd_engines(args: argparse.Namespace) -> int:
    """``brainfly engines``: registered engines, whether they run here, and why not."""
    from .engines.base import _REGISTRY, available_engines

    for name, (ok, reason) in available_engines().items():
        cls = _REGISTRY[name]
        flag = "yes" if ok else "no "
        exact = "exact" if cls.exact else "statistical"
        print(f"{name:<20} available: {flag}  {exact:<11} {cls.description or ''}" + (f"  ({reason})" if reason else ""))
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
    print(f"  cache folder {cn.cache_dir()}")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    """``brainfly lookup NAME...``: resolve names/IDs to FlyWire IDs."""
    from .connectome.lookup import resolve_neurons

    net = _load_connectome(args.data, progress=True)
    names = _names(net)
    for spec in args.names:
        idx = resolve_neurons(net, [int(spec) if spec.isdigit() else spec], owner="lookup")
        print(f"{spec}: {len(idx)} neuron(s)")
        for i in idx.tolist():
            fid = int(net.flywire_ids[i])
            print(f"  {fid}  idx {i}  {names.get(fid, '')}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    """``brainfly schedule``: draw an experiment's Poisson input and write it as a schedule file."""
    from .engines.base import prepare

    experiment = experiment_from_args(args)
    net = _load_connectome(args.data, progress=not args.quiet)
    sim = prepare(net, experiment)
    sched = sim.kicks(range(experiment.n_trials))
    sched.write(args.out, net.flywire_ids)
    print(f"{sched.n_kicks} kicks on {sched.activated_idx.size} neurons in {experiment.n_trials} trial(s) "
          f"written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``brainfly`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="brainfly",
        description="Whole-brain LIF simulation of the adult fruit fly (FlyWire connectome, Shiu et al. 2024).",
    )
    parser.add_argument("--version", action="version", version=f"brainfly {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run an experiment on one engine")
    _add_experiment_arguments(p)
    p.add_argument("--out", default=None, help="spike parquet (default output/{engine}_{experiment}.parquet)")
    p.add_argument("--no-resume", action="store_true", help="start again even if finished trials exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="the sugar-GRN experiment on the best connectome available")
    _add_data_argument(p)
    p.add_argument("--engine", default=DEFAULT_ENGINE)
    p.add_argument("--n-trials", type=int, default=30)
    p.add_argument("--out", default="output/demo_sugar.parquet")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("engines", help="list engines and whether they run here")
    p.set_defaults(func=cmd_engines)

    p = sub.add_parser("data", help="show or download connectome data")
    p.add_argument("action", choices=("info", "download"))
    p.add_argument("dataset", nargs="?", default="flywire-783", help="for download: flywire-783 or flywire-630")
    _add_data_argument(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("lookup", help="resolve neuron names or IDs")
    p.add_argument("names", nargs="+")
    _add_data_argument(p)
    p.set_defaults(func=cmd_lookup)

    p = sub.add_parser("schedule", help="write an experiment's Poisson input as an input-schedule file")
    _add_experiment_arguments(p)
    p.add_argument("--out", required=True, help="schedule file (.parquet or .csv)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_schedule)

    from .bench import add_bench_arguments, run_bench_from_args
    from .compare import add_compare_arguments, run_compare_from_args

    for name, add, run, text in (("bench", add_bench_arguments, run_bench_from_args,
                                  "benchmark grid of engines x durations x trials"),
                                 ("compare", add_compare_arguments, run_compare_from_args,
                                  "compare engines' saved spikes with Brian2's")):
        p = sub.add_parser(name, help=text)
        add(p)
        p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brainfly`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except BrainflyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished trials are kept and a new run with the same arguments resumes", file=sys.stderr)
        return 130
