"""Tiny adversarial networks for the conformance suite, and a per-step numpy oracle.

Each :class:`Case` is a hand-built connectome (a handful of neurons, FlyWire IDs
``1000 + idx``, labelled synthetic) with an explicit input schedule (model indices and
steps) chosen to exercise one corner of the semantics in ``docs/DEVELOPING.md``: grazing
the threshold from both sides, input landing in the refractory period and in the spike
step, inhibition, silencing (outgoing and both ways), two stimulus sets at different rates,
self-loops, zero-weight connections, and chains that check the 18-step delay.

:func:`step_oracle` iterates the model step by step in numpy exactly as Brian2's numpy
target does (update -> threshold -> synapses -> reset). It is slow and obvious, a second
opinion for engines on these tiny networks where Brian2 itself is not installed, and the
model of the semantics that the tests of the event engine check against.

Units: volts and integer steps; weights are synapse counts (times ``w_syn`` in the model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np

from ..connectome.network import Connectome
from ..experiment import Experiment, StimulusSet
from ..params import ModelParams
from ..results import SpikeResult
from ..schedule import InputSchedule

__all__ = [
    "Case",
    "CASES",
    "case_names",
    "get_case",
    "step_oracle",
    "oracle_result",
    "peak_gain",
    "crossing_steps",
    "critical_count",
    "random_network",
    "combine_cases",
    "case_part",
    "FLYWIRE_BASE",
]

#: FlyWire IDs of the tiny networks are ``FLYWIRE_BASE + idx``.
FLYWIRE_BASE = 1000

# count that makes a neuron at rest fire one step after the input arrives (x(1) > x_th
# needs c (a - b) g > 7 mV, g > ~1.41 V, ~5100 synapses): "as strong as it gets"
STRONG = 10_000.0


@dataclass
class Case:
    """A tiny network with its input, for the reference tier.

    Attributes
    ----------
    name : str
    connectome : Connectome
    kicks : list of (trial, idx, step)
        The explicit input schedule (Poisson kicks) in model indices.
    t_run : float
        Seconds.
    n_trials : int
    silenced : tuple of int
        Model indices of silenced neurons.
    silence_mode : str
    must_spike : tuple of int
        Model indices the reference must see spike (asserted before comparing).
    rates_hz : tuple of (tuple of idx, rate) pairs
        Stimulus sets for Poisson runs of the same network (statistical checks).
    note : str
        What the case exercises.
    """

    name: str
    connectome: Connectome
    kicks: list[tuple[int, int, int]]
    t_run: float = 0.05
    n_trials: int = 1
    silenced: tuple[int, ...] = ()
    silence_mode: str = "outgoing"
    must_spike: tuple[int, ...] = ()
    rates_hz: tuple[tuple[tuple[int, ...], float], ...] = ()
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def schedule(self) -> InputSchedule:
        """The kicks as an :class:`~brainfly.schedule.InputSchedule` (model indices)."""
        if not self.kicks:
            return InputSchedule(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int64))
        arr = np.asarray(self.kicks, dtype=np.int64)
        return InputSchedule(arr[:, 0], arr[:, 1], arr[:, 2])

    def fid(self, idx: Any) -> Any:
        """FlyWire IDs of model indices."""
        return self.connectome.flywire_ids[np.asarray(idx, dtype=np.int64)]

    def experiment(self, schedule_path: str | None, *, seed: int = 0, n_trials: int | None = None,
                   t_run: float | None = None) -> Experiment:
        """The experiment of this case: driven by the schedule file at *schedule_path*, or by
        the Poisson stimulus sets (``rates_hz``) when it is None."""
        stimuli: tuple[StimulusSet, ...] = ()
        if schedule_path is None:
            stimuli = tuple(StimulusSet(tuple(int(f) for f in self.fid(list(ids))), rate)
                            for ids, rate in self.rates_hz)
        return Experiment(
            name=f"case-{self.name}",
            stimuli=stimuli,
            silenced=tuple(int(f) for f in self.fid(list(self.silenced))) if self.silenced else (),
            silence_mode=self.silence_mode,
            t_run=self.t_run if t_run is None else t_run,
            n_trials=self.n_trials if n_trials is None else n_trials,
            seed=seed,
            input_schedule=schedule_path,
        )

    def write_schedule(self, path: Any) -> str:
        """Write the schedule file (parquet or CSV by suffix); returns its path."""
        self.schedule().write(path, self.connectome.flywire_ids)
        return str(path)


def _net(name: str, n: int, edges: list[tuple[int, int, float]]) -> Connectome:
    fids = FLYWIRE_BASE + np.arange(n, dtype=np.int64)
    if edges:
        pre, post, w = zip(*edges)
    else:
        pre, post, w = (), (), ()
    return Connectome.from_edges(fids, list(pre), list(post), list(w), name=f"tiny-{name}", synthetic=True,
                                 meta={"generator": "brainfly.testing.networks", "case": name})


# ---------------------------------------------------------------------- analytic helpers
def _abc(params: ModelParams) -> tuple[float, float, float]:
    co = params.step_coefficients()
    c = params.tau_ms / (params.t_mbr_ms - params.tau_ms)
    return co.v_decay, co.g_decay, c


def peak_gain(params: ModelParams | None = None, k_max: int = 2000) -> tuple[float, int]:
    """Largest ``c (a^k - b^k)`` over steps k >= 1 and its k: the discrete peak of the
    potential (relative to rest) per volt of g received at rest."""
    a, b, c = _abc(params or ModelParams())
    k = np.arange(1, k_max + 1, dtype=np.float64)
    gain = c * (a ** k - b ** k)
    j = int(np.argmax(gain))
    return float(gain[j]), int(k[j])


def critical_count(params: ModelParams | None = None) -> float:
    """Synapse count (float) whose single input takes a neuron at rest exactly to threshold."""
    p = params or ModelParams()
    co = p.step_coefficients()
    gain, _ = peak_gain(p)
    return (co.v_th - co.v_0) / (gain * co.w_syn)


def crossing_steps(x0: float, g0: float, params: ModelParams | None = None, k_max: int = 5000) -> int:
    """First k >= 1 with ``x(k) > v_th - v_0`` in closed form (exact arithmetic aside), or -1.

    x0, g0 in volts (x0 relative to rest), at the step of the input.
    """
    p = params or ModelParams()
    co = p.step_coefficients()
    a, b, c = _abc(p)
    x_th = co.v_th - co.v_0
    for k in range(1, k_max + 1):
        ak, bk = a ** k, b ** k
        if x0 * ak + c * (ak - bk) * g0 > x_th:
            return k
    return -1


# ---------------------------------------------------------------------- the cases
def _cases() -> dict[str, Case]:
    p = ModelParams()
    crit = critical_count(p)
    out: dict[str, Case] = {}

    # chain 0 -> 1 -> 2 -> 3 with strong weights: every hop takes delay + 1 steps;
    # 3 -> 4 moderate (fires after a latency that depends on the trajectory)
    out["chain"] = Case(
        "chain",
        _net("chain", 5, [(0, 1, STRONG), (1, 2, STRONG), (2, 3, STRONG), (3, 4, 200.0)]),
        kicks=[(0, 0, 3), (0, 0, 250)],
        t_run=0.05,
        must_spike=(0, 1, 2, 3, 4),
        rates_hz=(((0,), 150.0),),
        note="18-step delay: a kick at s fires the driver at s+1 and each strong hop 19 steps later",
    )
    # grazing the threshold from above and below (fractional counts: peak within ~1e-9 V)
    eps = 1e-6
    out["graze"] = Case(
        "graze",
        _net("graze", 5, [(0, 1, crit * (1 + eps)), (0, 2, crit * (1 - eps)),
                          (0, 3, math.ceil(crit)), (0, 4, math.floor(crit))]),
        kicks=[(0, 0, 10)],
        t_run=0.04,
        must_spike=(0, 1, 3),
        rates_hz=(((0,), 100.0),),
        note="single inputs whose peak lies just above / just below threshold",
    )
    # refractory: strong input, then input during refractory (dropped), input in the spike
    # step (dropped). Drivers 0, 1, 2 fire one step after their kick.
    out["refractory"] = Case(
        "refractory",
        _net("refractory", 6, [(0, 3, STRONG), (1, 3, 300.0), (2, 3, STRONG),
                               (0, 4, STRONG), (1, 4, STRONG), (2, 5, 150.0), (1, 5, 150.0)]),
        # 0 fires at 6 -> 3 and 4 get input at 24, spike at 25; 1 fires at 11 -> input at 29
        # (refractory for 3 and 4: dropped, or 4 would spike again at 25 + 22 = 47); 2 fires
        # at 7 -> input at 25 = spike step of 3 (dropped)
        kicks=[(0, 0, 5), (0, 1, 10), (0, 2, 6), (0, 0, 100), (0, 1, 100), (0, 2, 125)],
        t_run=0.04,
        must_spike=(0, 1, 2, 3, 4),
        rates_hz=(((0, 1, 2), 80.0),),
        note="input during the refractory period and in the spike step is dropped",
    )
    # inhibition: inhibitory input before, with, and after excitatory input
    out["inhibition"] = Case(
        "inhibition",
        _net("inhibition", 6, [(0, 3, 250.0), (1, 3, -60.0), (0, 4, 250.0), (2, 4, -400.0),
                               (0, 5, 400.0), (1, 5, -150.0), (2, 5, 30.0)]),
        kicks=[(0, 1, 2), (0, 0, 20), (0, 2, 30), (0, 0, 200), (0, 1, 205), (0, 2, 300), (0, 0, 301)],
        t_run=0.05,
        must_spike=(0, 1, 2, 3),
        rates_hz=(((0,), 150.0), ((1, 2), 60.0)),
        note="negative g: crossings delayed or prevented; g <= 0 trajectories never rise",
    )
    # silencing (outgoing): neuron 1 spikes but its targets get nothing
    sil_edges = [(0, 1, STRONG), (1, 2, STRONG), (0, 3, STRONG), (3, 4, STRONG), (2, 4, STRONG)]
    out["silence_out"] = Case(
        "silence_out", _net("silence_out", 5, sil_edges),
        kicks=[(0, 0, 4), (0, 0, 200)], t_run=0.04, silenced=(1,), silence_mode="outgoing",
        must_spike=(0, 1, 3, 4), rates_hz=(((0,), 150.0),),
        note="outgoing silencing: 1 still spikes, 2 never",
    )
    out["silence_both"] = Case(
        "silence_both", _net("silence_both", 5, sil_edges),
        kicks=[(0, 0, 4), (0, 0, 200)], t_run=0.04, silenced=(1,), silence_mode="both",
        must_spike=(0, 3, 4), rates_hz=(((0,), 150.0),),
        note="both-ways silencing: 1 gets no input and never spikes",
    )
    # two stimulus sets at different rates (schedule drawn once, fixed here)
    rng = np.random.default_rng(7)
    kicks = []
    for i, rate in ((0, 300.0), (1, 300.0), (2, 40.0), (3, 40.0)):
        steps = np.flatnonzero(rng.random(500) < rate * p.dt_s)
        kicks += [(0, i, int(s)) for s in steps]
    out["two_rates"] = Case(
        "two_rates",
        _net("two_rates", 8, [(0, 4, 120.0), (1, 4, 120.0), (2, 5, 400.0), (3, 5, -100.0),
                              (4, 6, 250.0), (5, 6, 250.0), (0, 7, 90.0), (2, 7, 90.0), (6, 7, 90.0)]),
        kicks=kicks, t_run=0.05, must_spike=(0, 1, 2, 3),
        rates_hz=(((0, 1), 300.0), ((2, 3), 40.0)),
        note="two stimulus sets with different rates and summed inputs",
    )
    # self-loops: on a neuron with rfc 22 its own input arrives (18 steps) while it is
    # refractory and is dropped; on a driven neuron (rfc 0) an excitatory self-loop makes
    # it fire every 19 steps for ever; an inhibitory one delays the next spike
    out["self_loop"] = Case(
        "self_loop",
        _net("self_loop", 6, [(0, 1, STRONG), (1, 1, STRONG), (0, 2, 300.0), (2, 2, -200.0),
                              (0, 3, 0.0), (3, 3, STRONG), (4, 4, STRONG), (4, 2, 60.0),
                              (5, 5, -400.0)]),
        kicks=[(0, 0, 2), (0, 0, 40), (0, 0, 41), (0, 0, 60), (0, 4, 7), (0, 5, 3), (0, 5, 30),
               (0, 5, 150)],
        t_run=0.03, must_spike=(0, 1, 2, 4, 5),
        rates_hz=(((0,), 100.0), ((4, 5), 20.0)),
        note="self-connections: dropped during refractoriness, self-sustaining on a driven neuron, inhibitory",
    )
    # zero weights, and a driven neuron kicked in every step (spikes every other step)
    out["zero_and_dense"] = Case(
        "zero_and_dense",
        _net("zero_and_dense", 5, [(0, 1, 0.0), (0, 2, 0.0), (2, 3, STRONG), (0, 4, 1.0), (1, 4, 0.0)]),
        kicks=[(0, 0, s) for s in range(10, 40)] + [(0, 1, 50), (0, 1, 50)],
        t_run=0.02, must_spike=(0, 1),
        rates_hz=(((0,), 1000.0),),
        note="zero-weight connections change nothing; kicks every step give spikes every other step; "
             "two kicks in one step add up",
    )
    # several trials with different schedules
    out["trials"] = Case(
        "trials",
        _net("trials", 4, [(0, 1, 220.0), (1, 2, STRONG), (2, 3, -500.0), (0, 3, 400.0)]),
        kicks=[(0, 0, 5), (1, 0, 7), (1, 0, 8), (2, 0, 100), (2, 0, 130)],
        t_run=0.03, n_trials=3, must_spike=(0, 1, 2),
        rates_hz=(((0,), 200.0),),
        note="independent trials with their own kicks",
    )
    return out


_CASES: dict[str, Case] | None = None


def _all() -> dict[str, Case]:
    global _CASES
    if _CASES is None:
        _CASES = _cases()
    return _CASES


def case_names() -> list[str]:
    """Names of the tiny adversarial cases."""
    return list(_all())


def get_case(name: str) -> Case:
    """One case by name (fresh copies are not needed: cases are never mutated)."""
    return _all()[name]


class _Cases:
    def __iter__(self):  # pragma: no cover - convenience
        return iter(_all().values())

    def __getitem__(self, name: str) -> Case:
        return _all()[name]

    def keys(self) -> list[str]:
        return list(_all())


#: Mapping-like access to the cases (built on first use).
CASES = _Cases()


def random_network(n_neurons: int = 120, n_driven: int = 12, seed: int = 0, *,
                   fan_in: int = 5, name: str = "random") -> tuple[Connectome, np.ndarray]:
    """A small layered random network with a broad range of firing rates (statistical tier).

    Neurons ``0 .. n_driven-1`` are the ones to drive; every other neuron receives
    ``fan_in`` connections from lower-indexed neurons (a feed-forward cascade, so activity
    cannot run away), about a fifth of them inhibitory, with synapse counts of 40-160 (a
    few coincident inputs make a neuron fire). Returns the connectome and the model indices
    of the neurons to drive.
    """
    rng = np.random.default_rng(seed)
    pre, post, w = [], [], []
    for i in range(n_driven, n_neurons):
        lo = max(0, i - 4 * n_driven)
        src = rng.choice(np.arange(lo, i), size=min(fan_in, i - lo), replace=False)
        for j in src.tolist():
            sign = -1.0 if rng.random() < 0.2 else 1.0
            pre.append(j)
            post.append(i)
            w.append(sign * float(rng.integers(20, 120)))
    fids = FLYWIRE_BASE + np.arange(n_neurons, dtype=np.int64)
    net = Connectome.from_edges(fids, pre, post, w, name=f"tiny-{name}-{seed}", synthetic=True,
                                meta={"generator": "brainfly.testing.networks.random_network", "seed": seed})
    return net, np.arange(n_driven, dtype=np.int64)


def combine_cases(names: list[str], name: str = "combined") -> tuple[Case, dict[str, int]]:
    """Several cases as disjoint parts of one network, in one experiment.

    For engines that compile a program per run (``brian2-standalone``): one build runs
    them all. Part *k* takes model indices ``offset_k ..`` (FlyWire IDs ``FLYWIRE_BASE +
    idx`` as usual); the run lasts the longest case's ``t_run`` with the largest
    ``n_trials``. The dynamics are causal and the parts disconnected, so a part's spikes
    up to its own case's ``t_run`` in its own trials are those of the case run alone
    (:func:`case_part`). The cases must share one silencing mode.

    Returns
    -------
    (Case, dict)
        The combined case and each name's index offset.
    """
    cases = [get_case(n) for n in names]
    modes = {c.silence_mode for c in cases if c.silenced}
    if len(modes) > 1:
        raise ValueError(f"combine_cases: cases {names} mix silencing modes {sorted(modes)}")
    offsets: dict[str, int] = {}
    edges: list[tuple[int, int, float]] = []
    kicks: list[tuple[int, int, int]] = []
    silenced: list[int] = []
    must: list[int] = []
    off = 0
    for c in cases:
        offsets[c.name] = off
        net = c.connectome
        edges += [(int(i) + off, int(j) + off, float(w))
                  for i, j, w in zip(net.pre_idx.tolist(), net.post_idx.tolist(), net.weight.tolist())]
        kicks += [(t, i + off, s) for t, i, s in c.kicks]
        silenced += [i + off for i in c.silenced]
        must += [i + off for i in c.must_spike]
        off += net.n_neurons
    combined = Case(name, _net(name, off, edges), kicks=sorted(kicks), t_run=max(c.t_run for c in cases),
                    n_trials=max(c.n_trials for c in cases), silenced=tuple(silenced),
                    silence_mode=modes.pop() if modes else "outgoing", must_spike=tuple(must),
                    note="disjoint parts: " + ", ".join(names))
    return combined, offsets


def case_part(result: SpikeResult, name: str, offset: int) -> set[tuple[int, int, int]]:
    """The spikes ``(trial, idx, step)`` of case *name* within a run of
    :func:`combine_cases`: its neurons (indices relative to the case), its trials and
    its steps."""
    case = get_case(name)
    n_steps = ModelParams().n_steps(case.t_run)
    lo, hi = offset, offset + case.connectome.n_neurons
    keep = (result.idx >= lo) & (result.idx < hi) & (result.trial < case.n_trials) & (result.step < n_steps)
    return set(zip(result.trial[keep].tolist(), (result.idx[keep] - lo).tolist(), result.step[keep].tolist()))


# ---------------------------------------------------------------------- the oracle
def step_oracle(sim: Any, schedule: InputSchedule, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """Spikes ``(idx, step)`` of one trial, iterating the model step by step in numpy.

    Brian2 numpy-target semantics (``docs/DEVELOPING.md``): per step, state update where
    not refractory (``timestep(t - lastspike) >= rfc``), threshold ``v > v_th`` (a spiking
    neuron becomes refractory), synaptic input of the spikes of ``step - delay``
    (``g += w``) and Poisson kicks (``v += kick``) onto neurons that are not refractory
    (Brian2 gates both: ``add.at(g, post[not_refractory], w[not_refractory])``; input
    during the refractory period is dropped), reset ``v = v_rst, g = 0``.

    Parameters
    ----------
    sim : SimulationInput
    schedule : InputSchedule
        Kicks (all trials; those of *trial* are used).
    """
    co = sim.coeffs
    net = sim.connectome
    n = net.n_neurons
    w_all = sim.weight_v()
    indptr = net.indptr
    post = net.post_idx
    rfc = sim.refractory_steps.astype(np.int64)
    sel = schedule.trial == trial
    k_idx = schedule.idx[sel].astype(np.int64)
    k_step = schedule.step[sel]
    v = np.full(n, co.v_0)
    g = np.zeros(n)
    lastspike = np.full(n, -10**9, dtype=np.int64)
    history: list[np.ndarray] = []
    out_i, out_s = [], []
    for s in range(sim.n_steps):
        free = (s - lastspike) >= rfc
        v_new = co.v_const + (co.v_from_g * g + co.v_decay * v)
        g_new = co.g_decay * g
        v = np.where(free, v_new, v)
        g = np.where(free, g_new, g)
        spk = np.flatnonzero((v > co.v_th) & free)
        lastspike[spk] = s
        free[spk] = False
        src = s - sim.delay_steps
        if src >= 0:
            for j in history[src].tolist():
                lo, hi = indptr[j], indptr[j + 1]
                tgt = post[lo:hi]
                ok = free[tgt]
                np.add.at(g, tgt[ok], w_all[lo:hi][ok])
        at = np.flatnonzero(k_step == s)
        if at.size:
            tgt = k_idx[at]
            np.add.at(v, tgt[free[tgt]], co.kick)
        v[spk] = co.v_rst
        g[spk] = 0.0
        history.append(spk)
        out_i.append(spk)
        out_s.append(np.full(spk.shape[0], s, np.int64))
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_s)


def oracle_result(sim: Any, schedule: InputSchedule, trials: list[int] | None = None) -> SpikeResult:
    """:func:`step_oracle` over trials, as a :class:`~brainfly.results.SpikeResult`."""
    trials = list(range(sim.n_trials)) if trials is None else list(trials)
    t_parts, i_parts, s_parts = [], [], []
    for k in trials:
        i, s = step_oracle(sim, schedule, k)
        t_parts.append(np.full(i.shape[0], k, np.int32))
        i_parts.append(i)
        s_parts.append(s)
    net = sim.connectome
    return SpikeResult(np.concatenate(t_parts), np.concatenate(i_parts), np.concatenate(s_parts),
                       net.flywire_ids, trials, sim.n_steps, sim.params.dt_s, sim.experiment.name,
                       engine="numpy-oracle", connectome_label=net.label, synthetic=True)
