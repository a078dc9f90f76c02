"""Mutation check of the event engine: does the test suite catch deliberate faults?

Each mutant is one fault put into the event engine's sources (``src/brainfly/engines/
_event_kernels.py`` and ``event.py``) by exact text substitutions, each of which must
occur exactly once in the current sources. The mutant is applied to a temporary COPY of
``src/`` (the repository is never modified); the default tests that matter for the event
engine then run against the copy::

    pytest tests/test_event_engine.py tests/test_conformance.py tests/test_stale_cache.py
           tests/test_event_mutants_killed.py --engine event -x -q

with ``PYTHONPATH`` at the copy and ``NUMBA_CACHE_DIR`` in a fresh folder per mutant (numba
compiles the mutated kernels; nothing cached from another run can stand in for them). A
mutant is *killed* when the run fails (or hangs past ``--timeout``), and the first failing
test is recorded. The unmutated copy runs first: it must pass, or the check stops
(``--skip-baseline`` for quick re-runs). The copy is of the working tree; the record names
the commit and any file under ``src/`` that differs from it. The tests are the checkout's
own (run from the repository root, nothing written there: no byte-code, no pytest cache).

Usage (not part of CI; ~10 minutes on two cores)::

    python benchmarks/mutation_check.py
    python benchmarks/mutation_check.py --only delay_plus_1 threshold_non_strict
    python benchmarks/mutation_check.py --list              # the mutants and where they apply
    python benchmarks/mutation_check.py --out docs/benchmarks/mutation_check.json

Prints a table and the kill rate, and writes a JSON record (mutant, where, killed, first
failure, seconds; date, command, hardware). Exit status 1 when a mutant survives.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import datetime as dt
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from brainfly.bench.hardware import hardware_info, hardware_summary

ROOT = Path(__file__).resolve().parents[1]
KERNELS = "src/brainfly/engines/_event_kernels.py"
ENGINE = "src/brainfly/engines/event.py"
TESTS = ["tests/test_event_engine.py", "tests/test_conformance.py", "tests/test_stale_cache.py",
         "tests/test_event_mutants_killed.py"]
PYTEST_ARGS = ["--engine", "event", "-x", "-q", "-p", "no:cacheprovider"]
DEFAULT_OUT = ROOT / "docs" / "benchmarks" / "mutation_check.json"


@dataclass(frozen=True)
class Mutant:
    """One fault: exact substitutions ``(file, old, new)``, each old text found once."""

    name: str
    fault: str
    edits: tuple[tuple[str, str, str], ...]


MUTANTS: tuple[Mutant, ...] = (
    Mutant("threshold_non_strict", "threshold v > v_th made v >= v_th (Brian2's update iterated near a crossing)",
           ((KERNELS, "        if vn > v_th:\n            return k\n        if vn < vv:",
             "        if vn >= v_th:\n            return k\n        if vn < vv:"),)),
    Mutant("delay_plus_1", "synaptic delay one step too long (spikes of step n - delay - 1 delivered)",
           ((KERNELS, "            src = n - delay\n", "            src = n - delay - 1\n"),)),
    Mutant("delay_minus_1", "synaptic delay one step too short",
           ((KERNELS, "            src = n - delay\n", "            src = n - delay + 1\n"),)),
    Mutant("refractory_plus_1", "neurons released one step after their refractory period ends",
           ((KERNELS, "                src = n - rd\n", "                src = n - rd - 1\n"),)),
    Mutant("refractory_minus_1", "neurons released one step before their refractory period ends",
           ((KERNELS, "                src = n - rd\n", "                src = n - rd + 1\n"),)),
    Mutant("refractory_input_held",
           "synaptic input that arrives during refractoriness is held (g kept, integrated from the release) "
           "instead of dropped",
           ((KERNELS, "                p_rst = x_rst * ainv[kr]\n",
             "                p_rst = x_rst * ainv[kr]\n                held = bpow[kr] * ainv[kr]\n"),
            (KERNELS, "                p_rst = x_rst * apow[-kr]\n",
             "                p_rst = x_rst * apow[-kr]\n                held = binv[-kr] * apow[-kr]\n"),
            (KERNELS, "                        hot[i, 0] = p_rst\n                        hot[i, 1] = 0.0\n",
             "                        hot[i, 0] = p_rst + hot[i, 1] * held\n"))),
    Mutant("reset_before_input",
           "a spiking neuron is reset at once, so the input of its spike step (and of its refractory period, "
           "until the release) is taken",
           ((KERNELS, "                hot[i, 0] = REFRACTORY_P\n", "                hot[i, 0] = x_rst * ainv[kb]\n"),)),
    Mutant("inhibitory_sign", "all-inhibitory rows delivered with the opposite sign (excitation)",
           ((KERNELS, "_deliver_inhibitory(k0, k1, syn2, wtab, t_bits, hot_flat, ca, cb,",
             "_deliver_inhibitory(k0, k1, syn2, wtab, t_bits, hot_flat, -ca, -cb,"),)),
    Mutant("kick_one_step_late", "Poisson kicks land one step after their scheduled step",
           ((KERNELS, "while kp < n_kicks and kick_step[kp] == n:", "while kp < n_kicks and kick_step[kp] + 1 == n:"),)),
    Mutant("silence_incoming",
           "silencing drops the connections onto the silenced neurons instead of their outgoing ones",
           ((ENGINE, "    keep = np.repeat(~mask_int, counts)\n",
             "    keep = ~mask_int[(net.syn & net.syn.dtype.type((1 << net.t_bits) - 1)) >> net.syn.dtype.type(1)]\n"),)),
    Mutant("rebase_factor", "rebase rescales Q with a^k instead of b^k",
           ((KERNELS, "                fb = bpow[shift]\n", "                fb = apow[shift]\n"),)),
    Mutant("crossing_scan_off_by_one", "the crossing scan stops one step short (range(1, k_end))",
           ((KERNELS, "    for k in range(1, k_end + 1):\n", "    for k in range(1, k_end):\n"),)),
    Mutant("search_horizon_short", "a crossing search never looks at the last step of the trial",
           ((KERNELS, "apow, bpow, v_const, v_decay, v_from_g, g_decay, n_steps - 1 - n)\n",
             "apow, bpow, v_const, v_decay, v_from_g, g_decay, n_steps - 2 - n)\n"),)),
    Mutant("stale_prediction_trusted",
           "a due prediction is trusted although input (inhibition) reached the neuron since it was made",
           ((KERNELS, "changed = pp != p_pr or qq != q_pr", "changed = False"),)),
    Mutant("put_off_check_late",
           "a put-off crossing search comes due one step after the first step where a crossing is possible "
           "(the bound's margin of two steps made -1)",
           ((KERNELS, "    return int(need / (cg * slope)) - 1\n", "    return int(need / (cg * slope)) + 2\n"),)),
    Mutant("ring_lap_dropped", "a prediction for a later lap of the calendar ring is dropped, not kept",
           ((KERNELS, "                else:  # a later lap of the ring: keep\n                    e_next[e] = head[bkt]\n"
                      "                    head[bkt] = e\n",
             "                else:  # a later lap of the ring: keep\n                    pass\n"),)),
    Mutant("buffer_growth_loses_one", "the spike record, when it grows within a trial, loses the step of its last spike",
           ((KERNELS, "            sp_step = _grow_i64(sp_step, n_sp)\n", "            sp_step = _grow_i64(sp_step, n_sp - 1)\n"),)),
)


def _where(text: str, old: str) -> str:
    """``function:line`` of the (single) occurrence of *old* in *text*."""
    pos = text.index(old)
    line = text.count("\n", 0, pos) + 1
    func = "<module>"
    for m in re.finditer(r"^\s*def (\w+)\(", text[:text.find("\n", pos)], flags=re.M):
        func = m.group(1)
    return f"{func}:{line}"


def check_edits(mutant: Mutant, root: Path = ROOT) -> list[str]:
    """Where each substitution of *mutant* applies (``file function:line``); ValueError
    unless each old text occurs exactly once in the sources under *root*."""
    out = []
    for rel, old, new in mutant.edits:
        text = (root / rel).read_text(encoding="utf-8")
        count = text.count(old)
        if count != 1:
            raise ValueError(f"mutant {mutant.name}: the text to replace occurs {count} times in {rel} "
                             f"(must be exactly once): {old!r}")
        if old == new:
            raise ValueError(f"mutant {mutant.name}: a substitution that changes nothing")
        out.append(f"{Path(rel).name} {_where(text, old)}")
    return out


def _copy_sources(dest: Path, mutant: Mutant | None) -> Path:
    """``src/`` copied to *dest* (no byte-code), with the substitutions of *mutant*."""
    src = dest / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    if mutant is not None:
        for rel, old, new in mutant.edits:
            path = dest / rel
            text = path.read_text(encoding="utf-8")
            if text.count(old) != 1:
                raise ValueError(f"mutant {mutant.name}: {rel} changed under the check")
            path.write_text(text.replace(old, new), encoding="utf-8")
    return src


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].split(" ", 1)[1].strip()
    m = re.search(r"^_{3,} (.+?) _{3,}$", output, flags=re.M)  # a failure header
    return m.group(1) if m else ""


def run_suite(mutant: Mutant | None, tests: list[str], timeout: float) -> dict:
    """The test selection against a copy of the sources with *mutant* applied."""
    with tempfile.TemporaryDirectory(prefix="brainfly-mutant-") as tmp:
        tmp_path = Path(tmp)
        src = _copy_sources(tmp_path, mutant)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")  # fresh: the mutated kernels compile
        # numba's JIT kernel only: the compiled one comes from the same source, and building it
        # in the background for every mutant would take a core from the tests
        env["BRAINFLY_EVENT_KERNEL"] = "jit"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("BRAINFLY_CACHE_DIR", None)  # the test session makes a fresh cache folder
        cmd = [sys.executable, "-m", "pytest", *tests, *PYTEST_ARGS]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this run started, nothing else
            output, _ = proc.communicate()
            timed_out = True
        seconds = time.perf_counter() - t0
        if mutant is None or timed_out or proc.returncode != 0:
            # a check that the copy (not the installed sources) was tested
            where = subprocess.run([sys.executable, "-c", "import brainfly; print(brainfly.__file__)"], cwd=ROOT,
                                   env=env, capture_output=True, text=True).stdout.strip()
            if not where.startswith(str(src)):
                raise RuntimeError(f"the tests imported brainfly from {where!r}, not from the copy {src}")
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    return {"returncode": None if timed_out else proc.returncode, "timed_out": timed_out, "seconds": seconds,
            "first_failure": "timeout" if timed_out else _first_failure(output), "summary": summary,
            "output": output}


def _table(rows: list[dict]) -> str:
    w = max([len("mutant")] + [len(r["mutant"]) for r in rows])
    lines = [f"{'mutant':<{w}}  {'killed':<6}  {'s':>6}  first failure"]
    for r in rows:
        lines.append(f"{r['mutant']:<{w}}  {'yes' if r['killed'] else 'NO':<6}  {r['seconds']:6.1f}  "
                     f"{r['first_failure'] or '-'}")
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def _sources() -> dict:
    """The commit, and the files under src/ that differ from it (the copy is the working tree)."""
    changed = [line[3:] for line in _git("status", "--porcelain", "--", "src").splitlines() if line.strip()]
    return {"git_commit": _git("rev-parse", "HEAD").strip(), "uncommitted_in_src": changed,
            "engine_files_clean": not any(f in (KERNELS, ENGINE) for f in changed)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON record (default {DEFAULT_OUT})")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per test run; longer counts as killed")
    ap.add_argument("--list", action="store_true", help="list the mutants and where they apply, then exit")
    ap.add_argument("--skip-baseline", action="store_true",
                    help="do not run the tests on the unmutated copy first (quicker re-runs; the record says so)")
    args = ap.parse_args(argv)

    names = [m.name for m in MUTANTS]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        ap.error(f"unknown mutant(s) {', '.join(unknown)}; known: {', '.join(names)}")
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    where = {m.name: check_edits(m) for m in chosen}  # every substitution applies, before any run
    if args.list:
        for m in chosen:
            print(f"{m.name:<26} {'; '.join(where[m.name])}\n{'':<26} {m.fault}")
        return 0

    tests = [t for t in TESTS if (ROOT / t).exists()]
    command = " ".join(["python", "-m", "pytest", *tests, *PYTEST_ARGS])
    print(f"hardware: {hardware_summary()}", flush=True)
    print(f"tests: {command}  (PYTHONPATH=<copy of src>, NUMBA_CACHE_DIR=<fresh per run>)", flush=True)
    t_all = time.perf_counter()
    if args.skip_baseline:
        base = {"returncode": 0, "seconds": 0.0, "summary": "skipped (--skip-baseline)"}
    else:
        base = run_suite(None, tests, args.timeout)
        print(f"baseline (no mutant): {'passed' if base['returncode'] == 0 else 'FAILED'} in "
              f"{base['seconds']:.1f} s ({base['summary']})", flush=True)
    if base["returncode"] != 0:
        print(base["output"][-4000:], file=sys.stderr)
        print("the unmutated sources fail the tests: no mutation check", file=sys.stderr)
        return 2

    rows = []
    for m in chosen:
        res = run_suite(m, tests, args.timeout)
        killed = res["timed_out"] or res["returncode"] != 0
        row = {"mutant": m.name, "fault": m.fault, "where": where[m.name], "killed": killed,
               "first_failure": res["first_failure"] if killed else "", "seconds": round(res["seconds"], 1),
               "summary": res["summary"]}
        rows.append(row)
        print(f"{m.name}: {'killed' if killed else 'SURVIVED'} in {res['seconds']:.1f} s"
              f"{' by ' + row['first_failure'] if killed else ''}", flush=True)
    total_s = time.perf_counter() - t_all

    n_killed = sum(r["killed"] for r in rows)
    rate = n_killed / len(rows) if rows else 1.0
    print()
    print(_table(rows))
    print(f"\nkill rate: {n_killed}/{len(rows)} = {100 * rate:.0f}%  (total {total_s:.0f} s, "
          f"baseline run {base['seconds']:.0f} s)")
    record = {
        "what": "mutation check of the event engine: faults applied one at a time to a copy of src/, "
                "the event engine's default tests run against each",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/mutation_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "test_command": command,
        "sources": _sources(),
        "hardware": hardware_info(),
        "baseline": {"passed": None if args.skip_baseline else True, "seconds": round(base["seconds"], 1),
                     "summary": base["summary"]},
        "kill_rate": rate,
        "killed": n_killed,
        "mutants": rows,
        "total_s": round(total_s, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"record: {args.out}")
    return 0 if n_killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
