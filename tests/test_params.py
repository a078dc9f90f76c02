"""ModelParams: the paper's values, Brian2's step constants, validation."""

import math

import pytest

from brainfly.errors import ValidationError
from brainfly.params import ModelParams, brian2_timestep


def test_paper_defaults_in_steps():
    p = ModelParams()
    assert (p.delay_steps, p.refractory_steps, p.n_steps(1.0)) == (18, 22, 10000)


def test_coefficients_match_closed_form():
    c = ModelParams().step_coefficients()
    dt, tau, tm = 1e-4, 5e-3, 20e-3
    assert c.g_decay == pytest.approx(math.exp(-dt / tau), rel=1e-15)
    assert c.v_decay == pytest.approx(math.exp(-dt / tm), rel=1e-15)
    # v response to g: tau/(tm - tau) * (exp(-dt/tm) - exp(-dt/tau))
    assert c.v_from_g == pytest.approx(tau / (tm - tau) * (math.exp(-dt / tm) - math.exp(-dt / tau)), rel=1e-12)
    assert c.kick == pytest.approx(0.06875)
    # the resting state is a fixed point of the update, to the last bit
    assert c.v_const + (c.v_from_g * 0.0 + c.v_decay * c.v_0) == pytest.approx(c.v_0, abs=1e-18)


def test_brian2_timestep_rounding():
    assert brian2_timestep(2.2e-3, 1e-4) == 22
    assert brian2_timestep(1.8e-3, 1e-4) == 18


@pytest.mark.parametrize("field,value,needle", [
    ("dt_ms", 0.0, "dt_ms"),
    ("t_dly_ms", 1.85, "whole number of steps"),
    ("v_th_mv", -60.0, "threshold"),
    ("tau_ms", 20.0, "differ"),
    ("t_rfc_ms", -1.0, "t_rfc_ms"),
])
def test_impossible_parameters_are_refused(field, value, needle):
    with pytest.raises(ValidationError, match=needle):
        ModelParams(**{field: value})


def test_round_trip_and_unknown_keys():
    p = ModelParams(w_syn_mv=0.3)
    assert ModelParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValidationError, match="unknown parameter"):
        ModelParams.from_dict({"w_syn": 1})
