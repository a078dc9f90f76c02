"""Model parameters of Shiu et al. (2024), defined once.

Field names carry their units (``_mv``, ``_ms``); engines never use them directly but
go through :meth:`ModelParams.step_coefficients` and the step counts below, which
translate them into SI volts and integer steps exactly as Brian2's ``method='linear'``
code generation does (same expressions, same order of floating-point operations), so
that every engine starts from bit-identical constants.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, asdict
import math
from typing import Any

from .errors import ValidationError

__all__ = ["ModelParams", "StepCoefficients", "brian2_timestep"]


def brian2_timestep(t_s: float, dt_s: float) -> int:
    """Convert a time to an integer number of steps the way Brian2 does.

    Brian2 (``brian2.groups.group``/``clocks``) uses ``int((t + 1e-3 * dt) / dt)``, which
    rounds values such as 2.2 ms / 0.1 ms = 22.000000000000004 to 22.
    """
    return int((t_s + 1e-3 * dt_s) / dt_s)


@dataclass(frozen=True)
class StepCoefficients:
    """One time step of the linear model, in SI units (volts), as Brian2 computes it.

    For a neuron that is not refractory, one step maps ``(v, g)`` to::

        g' = g_decay * g
        v' = v_const + (v_from_g * g + v_decay * v)

    (Brian2 2.8/2.9 ``method='linear'``, numpy target; the parenthesisation matters for
    bit-identical results.)
    """

    g_decay: float  #: exp(-dt / tau)
    v_decay: float  #: exp(-dt / t_mbr)
    v_from_g: float  #: tau/(t_mbr - tau) * (exp(dt/tau) - exp(dt/t_mbr)) * exp(-dt/t_mbr) * exp(-dt/tau)
    v_const: float  #: v_0 - v_0 * exp(-dt / t_mbr)
    v_0: float  #: resting potential, V
    v_th: float  #: threshold, V (spike when v > v_th, strictly)
    v_rst: float  #: reset potential, V
    w_syn: float  #: weight of one synapse, V
    kick: float  #: one Poisson kick onto v, f_poi * w_syn, V


@dataclass(frozen=True)
class ModelParams:
    """The paper's LIF parameters (defaults) with units in the names.

    Examples
    --------
    >>> p = ModelParams()
    >>> p.delay_steps, p.refractory_steps
    (18, 22)
    """

    v_0_mv: float = -52.0
    v_rst_mv: float = -52.0
    v_th_mv: float = -45.0
    t_mbr_ms: float = 20.0
    tau_ms: float = 5.0
    t_rfc_ms: float = 2.2
    t_dly_ms: float = 1.8
    w_syn_mv: float = 0.275
    f_poi: float = 250.0
    dt_ms: float = 0.1

    def __post_init__(self) -> None:
        self.validate()

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        """Refuse impossible values with a message naming the field.

        Raises
        ------
        ValidationError
            If a time constant or dt is not positive, the delay is not a whole number of
            steps (at least one), the threshold is not above reset and rest, or tau equals
            t_mbr (the linear solution has a different form then).
        """
        for name in ("t_mbr_ms", "tau_ms", "dt_ms", "w_syn_mv", "f_poi"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValidationError(f"ModelParams.{name}: must be a finite number > 0 (got {value!r})")
        for name in ("v_0_mv", "v_rst_mv", "v_th_mv", "t_rfc_ms", "t_dly_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValidationError(f"ModelParams.{name}: must be a finite number (got {value!r})")
        if self.t_rfc_ms < 0:
            raise ValidationError(f"ModelParams.t_rfc_ms: must be >= 0 ms (got {self.t_rfc_ms})")
        ratio = self.t_dly_ms / self.dt_ms
        if self.t_dly_ms <= 0 or abs(ratio - round(ratio)) > 1e-9:
            raise ValidationError(
                f"ModelParams.t_dly_ms: the synaptic delay must be a positive whole number of steps "
                f"of dt={self.dt_ms} ms (got {self.t_dly_ms} ms = {ratio:g} steps); "
                f"choose dt_ms so that it divides t_dly_ms, e.g. 0.1 or 0.05"
            )
        if not self.v_th_mv > self.v_rst_mv or not self.v_th_mv > self.v_0_mv:
            raise ValidationError(
                f"ModelParams.v_th_mv: threshold must be above reset and rest "
                f"(got v_th={self.v_th_mv}, v_rst={self.v_rst_mv}, v_0={self.v_0_mv} mV)"
            )
        if self.tau_ms == self.t_mbr_ms:
            raise ValidationError(
                f"ModelParams.tau_ms: must differ from t_mbr_ms (both {self.tau_ms} ms); "
                "the exact linear integration used by the paper is singular there"
            )

    # ---------------------------------------------------------------- derived
    @property
    def dt_s(self) -> float:
        """Time step in seconds."""
        return self.dt_ms * 1e-3

    @property
    def delay_steps(self) -> int:
        """Synaptic delay in steps (a spike in step s reaches g in step s + delay_steps)."""
        return brian2_timestep(self.t_dly_ms * 1e-3, self.dt_s)

    @property
    def refractory_steps(self) -> int:
        """Refractory period in steps (Brian2's ``timestep(rfc, dt)``)."""
        return brian2_timestep(self.t_rfc_ms * 1e-3, self.dt_s)

    def n_steps(self, t_run_s: float) -> int:
        """Number of steps Brian2 runs for a duration of ``t_run_s`` seconds."""
        return int(round(t_run_s / self.dt_s))

    def step_coefficients(self) -> StepCoefficients:
        """Constants of one exact integration step, computed as Brian2's generated code does."""
        dt = self.dt_s
        tau = self.tau_ms * 1e-3
        t_mbr = self.t_mbr_ms * 1e-3
        v_0 = self.v_0_mv * 1e-3
        lio_1 = (-dt) / tau
        lio_2 = math.exp(lio_1)
        lio_3 = tau / (t_mbr - tau)
        lio_4 = dt / t_mbr
        lio_5 = dt / tau
        lio_6 = (-dt) / t_mbr
        lio_8 = v_0 - (v_0 * math.exp(lio_6))
        lio_9 = ((lio_3 * ((-math.exp(lio_4)) + math.exp(lio_5))) * math.exp(lio_6)) * math.exp(lio_1)
        lio_10 = math.exp(lio_6)
        w_syn = self.w_syn_mv * 1e-3
        return StepCoefficients(
            g_decay=lio_2,
            v_decay=lio_10,
            v_from_g=lio_9,
            v_const=lio_8,
            v_0=v_0,
            v_th=self.v_th_mv * 1e-3,
            v_rst=self.v_rst_mv * 1e-3,
            w_syn=w_syn,
            kick=w_syn * self.f_poi,
        )

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, float]:
        """Plain dict of the fields (for TOML, JSON and result metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelParams":
        """Build from a dict, refusing unknown keys with the list of valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = set(values) - valid
        if unknown:
            raise ValidationError(
                f"ModelParams: unknown parameter(s) {sorted(unknown)}; valid ones are {sorted(valid)}"
            )
        out = {}
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValidationError(f"ModelParams.{k}: must be a number (got {v!r}, a {type(v).__name__})")
            out[k] = float(v)
        return cls(**out)
