// brainfly_lif: brainfly's LIF node model for NEST GPU (part of brainfly, not of NEST GPU).
//
// The model of Shiu et al. (2024) as Brian2 runs it (docs/model-spec.md of brainfly):
// v and g are held in double precision in arrays of this model (NEST GPU's own state
// variables are float); the step constants arrive as three floats each (hi + mid + lo,
// which rebuilds the double exactly, see brainfly.engines.nestgpu_engine.split_double).
//
// Ports: 0 = synaptic input onto g (weights are signed synapse counts, multiplied by
// w_syn here); 1 = Poisson kicks onto v (weight 1 per kick, each adds `kick` to v).
// Input collected in a NEST GPU step is applied at the start of the next step's update,
// and dropped if the neuron was refractory (or spiked) in the step it arrived.
// NEST GPU step 0 is a pad step (no update): model step s = NEST GPU step s + 1, so that
// a kick of model step 0 can be sent by a spike generator one step earlier.

#ifndef BRAINFLY_LIF_H
#define BRAINFLY_LIF_H

#include <string>
#include "base_neuron.h"
#include "neuron_models.h"

namespace brainfly_lif_ns
{
enum ScalVarIndexes {
  i_in_g = 0,        // port 0: synaptic input of this step (sum of signed counts)
  i_in_v,            // port 1: number of kicks of this step
  i_refractory_count,
  i_refractory_prev, // 1 if the neuron was refractory (or spiked) in the previous step
  N_SCAL_VAR
};

enum ScalParamIndexes {
  i_v_const_hi = 0, i_v_const_mid, i_v_const_lo,
  i_v_decay_hi, i_v_decay_mid, i_v_decay_lo,
  i_v_from_g_hi, i_v_from_g_mid, i_v_from_g_lo,
  i_g_decay_hi, i_g_decay_mid, i_g_decay_lo,
  i_v_th_hi, i_v_th_mid, i_v_th_lo,
  i_v_rst_hi, i_v_rst_mid, i_v_rst_lo,
  i_v_init_hi, i_v_init_mid, i_v_init_lo,
  i_kick_hi, i_kick_mid, i_kick_lo,
  i_w_syn_hi, i_w_syn_mid, i_w_syn_lo,
  i_refractory_steps,
  i_pad_steps,
  N_SCAL_PARAM
};

const std::string brainfly_lif_scal_var_name[N_SCAL_VAR] = {
  "in_g", "in_v", "refractory_count", "refractory_prev"
};

const std::string brainfly_lif_scal_param_name[N_SCAL_PARAM] = {
  "v_const_hi", "v_const_mid", "v_const_lo",
  "v_decay_hi", "v_decay_mid", "v_decay_lo",
  "v_from_g_hi", "v_from_g_mid", "v_from_g_lo",
  "g_decay_hi", "g_decay_mid", "g_decay_lo",
  "v_th_hi", "v_th_mid", "v_th_lo",
  "v_rst_hi", "v_rst_mid", "v_rst_lo",
  "v_init_hi", "v_init_mid", "v_init_lo",
  "kick_hi", "kick_mid", "kick_lo",
  "w_syn_hi", "w_syn_mid", "w_syn_lo",
  "refractory_steps",
  "pad_steps"
};
} // namespace brainfly_lif_ns

class brainfly_lif : public BaseNeuron
{
 public:
  double *d_v_;  // membrane potential (volts, double)
  double *d_g_;  // conductance-like input variable (volts, double)

  brainfly_lif() : d_v_(NULL), d_g_(NULL) {}
  ~brainfly_lif();

  int Init(int i_node_0, int n_neuron, int n_port, int i_group,
           unsigned long long *seed);
  int Calibrate(double time_min, float time_resolution);
  int Update(long long it, double t1);
  int Free();
};

#endif
