// brainfly_lif: brainfly's LIF node model for NEST GPU; see brainfly_lif.h.
//
// One update per NEST GPU step `it` (model step it - pad_steps), per neuron:
//   1. input of the previous step (in_g, in_v): applied unless the neuron was refractory
//      or spiked in that step (Brian2 drops such input); g += in_g * w_syn, then each kick
//      adds `kick` to v, one after the other; in_g = in_v = 0
//   2. refractory counter: decremented; the neuron is refractory while it is > 0
//   3. not refractory: g' = g_decay * g; v' = v_const + (v_from_g * g + v_decay * v)
//   4. not refractory and v' > v_th (strict): spike, v = v_rst, g = 0,
//      counter = refractory_steps, and this step counts as refractory for step 1 of the next.

#include <config.h>
#include "brainfly_lif.h"
#include "cuda_error.h"
#include "spike_buffer.h"

using namespace brainfly_lif_ns;

__device__ __forceinline__ double brainfly_join(const float *param, int i_hi)
{
  return ((double)param[i_hi] + (double)param[i_hi + 1]) + (double)param[i_hi + 2];
}

__global__ void brainfly_lif_Calibrate(int n_node, float *param_arr, int n_param,
                                       float *var_arr, int n_var, double *v, double *g)
{
  int i = threadIdx.x + blockIdx.x * blockDim.x;
  if (i < n_node) {
    const float *param = param_arr + n_param * i;
    float *var = var_arr + n_var * i;
    v[i] = brainfly_join(param, i_v_init_hi);
    g[i] = 0.0;
    var[i_in_g] = 0.0f;
    var[i_in_v] = 0.0f;
    var[i_refractory_count] = 0.0f;
    var[i_refractory_prev] = 0.0f;
  }
}

__global__ void brainfly_lif_Update(int n_node, int i_node_0, long long it, float *var_arr,
                                    float *param_arr, int n_var, int n_param,
                                    double *v_arr, double *g_arr)
{
  int i = threadIdx.x + blockIdx.x * blockDim.x;
  if (i >= n_node) return;
  float *var = var_arr + n_var * i;
  const float *param = param_arr + n_param * i;
  if (it < (long long)param[i_pad_steps]) return;  // pad step: nothing happens

  double v = v_arr[i];
  double g = g_arr[i];

  // 1. input that arrived in the previous step
  if (var[i_refractory_prev] == 0.0f) {
    if (var[i_in_g] != 0.0f) {
      g = g + (double)var[i_in_g] * brainfly_join(param, i_w_syn_hi);
    }
    int n_kicks = (int)var[i_in_v];
    if (n_kicks > 0) {
      double kick = brainfly_join(param, i_kick_hi);
      for (int k = 0; k < n_kicks; k++) {
        v = v + kick;
      }
    }
  }
  var[i_in_g] = 0.0f;
  var[i_in_v] = 0.0f;

  // 2. refractory period (counted in steps)
  float count = var[i_refractory_count];
  if (count > 0.0f) {
    count -= 1.0f;
  }
  bool refractory = count > 0.0f;

  // 3. linear update (Brian2's parenthesisation)
  if (!refractory) {
    double g_new = brainfly_join(param, i_g_decay_hi) * g;
    v = brainfly_join(param, i_v_const_hi)
      + (brainfly_join(param, i_v_from_g_hi) * g + brainfly_join(param, i_v_decay_hi) * v);
    g = g_new;
    // 4. strict threshold, reset
    if (v > brainfly_join(param, i_v_th_hi)) {
      PushSpike(i_node_0 + i, 1.0);
      v = brainfly_join(param, i_v_rst_hi);
      g = 0.0;
      count = param[i_refractory_steps];
      refractory = true;  // input of the spike step is dropped
    }
  }
  var[i_refractory_count] = count;
  var[i_refractory_prev] = refractory ? 1.0f : 0.0f;
  v_arr[i] = v;
  g_arr[i] = g;
}

brainfly_lif::~brainfly_lif()
{
  Free();
}

int brainfly_lif::Init(int i_node_0, int n_node, int /*n_port*/, int i_group,
                       unsigned long long *seed)
{
  BaseNeuron::Init(i_node_0, n_node, 2 /*n_port*/, i_group, seed);
  node_type_ = i_brainfly_lif_model;
  n_scal_var_ = N_SCAL_VAR;
  n_var_ = n_scal_var_;
  n_scal_param_ = N_SCAL_PARAM;
  n_param_ = n_scal_param_;
  AllocParamArr();
  AllocVarArr();
  scal_var_name_ = brainfly_lif_scal_var_name;
  scal_param_name_ = brainfly_lif_scal_param_name;

  for (int k = 0; k < N_SCAL_PARAM; k++) {
    SetScalParam(0, n_node, brainfly_lif_scal_param_name[k], 0.0);
  }
  SetScalParam(0, n_node, "pad_steps", 1.0);
  for (int k = 0; k < N_SCAL_VAR; k++) {
    SetScalVar(0, n_node, brainfly_lif_scal_var_name[k], 0.0);
  }
  gpuErrchk(cudaMalloc(&d_v_, n_node * sizeof(double)));
  gpuErrchk(cudaMalloc(&d_g_, n_node * sizeof(double)));
  gpuErrchk(cudaMemset(d_v_, 0, n_node * sizeof(double)));
  gpuErrchk(cudaMemset(d_g_, 0, n_node * sizeof(double)));

  // every port weighs 1: the connection weights carry the counts
  float one = 1.0f;
  gpuErrchk(cudaMalloc(&port_weight_arr_, sizeof(float)));
  gpuErrchk(cudaMemcpy(port_weight_arr_, &one, sizeof(float), cudaMemcpyHostToDevice));
  port_weight_arr_step_ = 0;
  port_weight_port_step_ = 0;

  // port 0 -> in_g, port 1 -> in_v (adjacent variables)
  port_input_arr_ = GetVarArr() + GetScalVarIdx("in_g");
  port_input_arr_step_ = n_var_;
  port_input_port_step_ = 1;
  return 0;
}

int brainfly_lif::Calibrate(double /*time_min*/, float /*time_resolution*/)
{
  brainfly_lif_Calibrate<<<(n_node_ + 1023) / 1024, 1024>>>
    (n_node_, param_arr_, n_param_, var_arr_, n_var_, d_v_, d_g_);
  gpuErrchk(cudaPeekAtLastError());
  return 0;
}

int brainfly_lif::Update(long long it, double /*t1*/)
{
  brainfly_lif_Update<<<(n_node_ + 1023) / 1024, 1024>>>
    (n_node_, i_node_0_, it, var_arr_, param_arr_, n_var_, n_param_, d_v_, d_g_);
  return 0;
}

int brainfly_lif::Free()
{
  if (d_v_ != NULL) {
    FreeVarArr();
    FreeParamArr();
    cudaFree(d_v_);
    cudaFree(d_g_);
    d_v_ = NULL;
    d_g_ = NULL;
  }
  return 0;
}
