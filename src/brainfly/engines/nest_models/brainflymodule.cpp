/*
 * brainflymodule: the NEST extension module of brainfly (https://github.com/ -- brainfly).
 *
 * One node model, ``brainfly_lif``: the leaky integrate-and-fire neuron of Shiu et al.
 * (Nature 634, 2024) exactly as its Brian2 code runs it (brainfly docs/model-spec.md).
 * One call of update() per step, in Brian2's order of a step:
 *
 *   1. state update unless frozen (refractory):
 *          v' = v_const + (v_from_g * g + v_decay * v);  g' = g_decay * g
 *   2. threshold, strict: spiked = !frozen && v > v_th
 *   3. input of this step, dropped unless the neuron accepts it (not frozen, not spiked):
 *          g += w, one connection at a time in ascending sender id (= presynaptic
 *          model index + id_offset), as Brian2 adds them; then v += kick per kick
 *   4. reset of a spiking neuron: v = v_rst, g = 0; frozen for frozen_steps steps
 *
 * Steps before ``start_step`` (absolute NEST steps) do nothing and drop their input:
 * the engine starts each trial at a later start_step in one running network, so that
 * spikes still in flight from the previous trial are discarded.
 *
 * Receptor 0: synaptic spikes (weight = w in volts). Receptor 1: Poisson kicks (the
 * weight is ignored; each spike, times its multiplicity, is one kick of ``kick`` volts).
 *
 * Compiled by brainfly.engines.nest_engine.build_nest_model() with -ffp-contract=off
 * -fno-fast-math (no fused multiply-adds: the update is bit-identical to numpy's).
 * Units: volts and steps, plain doubles (no unit conversion touches a value).
 */

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "archiving_node.h"
#include "connection.h"
#include "dict_util.h"
#include "event.h"
#include "exceptions.h"
#include "kernel_manager.h"
#include "nest_extension_interface.h"
#include "nest_types.h"

namespace brainfly
{

class brainfly_lif : public nest::ArchivingNode
{
public:
  brainfly_lif();
  brainfly_lif( const brainfly_lif& );

  using nest::Node::handle;
  using nest::Node::handles_test_event;

  size_t send_test_event( nest::Node&, size_t, nest::synindex, bool ) override;
  size_t handles_test_event( nest::SpikeEvent&, size_t ) override;
  void handle( nest::SpikeEvent& ) override;

  void get_status( Dictionary& ) const override;
  void set_status( const Dictionary& ) override;

private:
  void init_buffers_() override;
  void pre_run_hook() override;
  void update( nest::Time const&, const long, const long ) override;

  struct Input
  {
    long step;      // absolute step in which the input lands
    size_t sender;  // sender node id (order of addition)
    double w;       // volts (synapse) or number of kicks (receptor 1)
    bool kick;
  };

  // parameters (volts, steps)
  double v_const_ = 0.0;
  double v_decay_ = 1.0;
  double v_from_g_ = 0.0;
  double g_decay_ = 1.0;
  double v_th_ = -0.045;
  double v_rst_ = -0.052;
  double kick_ = 0.06875;
  long frozen_steps_ = 21;
  long start_step_ = 0;
  // state
  double v_ = -0.052;
  double g_ = 0.0;
  long frozen_left_ = 0;
  // pending input, unordered; taken out in the step it lands
  std::vector< Input > pending_;
  std::vector< Input > now_;

  static const std::pair< const char*, double brainfly_lif::* > doubles_[ 9 ];
  static const std::pair< const char*, long brainfly_lif::* > longs_[ 3 ];
};

brainfly_lif::brainfly_lif()
  : nest::ArchivingNode()
{
}

brainfly_lif::brainfly_lif( const brainfly_lif& n )
  : nest::ArchivingNode( n )
  , v_const_( n.v_const_ )
  , v_decay_( n.v_decay_ )
  , v_from_g_( n.v_from_g_ )
  , g_decay_( n.g_decay_ )
  , v_th_( n.v_th_ )
  , v_rst_( n.v_rst_ )
  , kick_( n.kick_ )
  , frozen_steps_( n.frozen_steps_ )
  , start_step_( n.start_step_ )
  , v_( n.v_ )
  , g_( n.g_ )
  , frozen_left_( n.frozen_left_ )
{
}

size_t
brainfly_lif::send_test_event( nest::Node& target, size_t receptor_type, nest::synindex, bool )
{
  nest::SpikeEvent e;
  e.set_sender( *this );
  return target.handles_test_event( e, receptor_type );
}

size_t
brainfly_lif::handles_test_event( nest::SpikeEvent&, size_t receptor_type )
{
  if ( receptor_type > 1 )
  {
    throw nest::UnknownReceptorType( receptor_type, get_name() );
  }
  return receptor_type;
}

void
brainfly_lif::handle( nest::SpikeEvent& e )
{
  const long origin = nest::kernel().simulation_manager.get_slice_origin().get_steps();
  const long step = origin + e.get_rel_delivery_steps( nest::kernel().simulation_manager.get_slice_origin() );
  const bool kick = e.get_rport() == 1;
  const double w = kick ? static_cast< double >( e.get_multiplicity() ) : e.get_weight();
  for ( size_t m = 0; m < ( kick ? 1 : e.get_multiplicity() ); ++m )
  {
    pending_.push_back( Input{ step, e.get_sender_node_id(), w, kick } );
  }
}

// the status dictionary: name -> member, for the double and the integer entries
const std::pair< const char*, double brainfly_lif::* > brainfly_lif::doubles_[] = { { "v_const", &brainfly_lif::v_const_ },
  { "v_decay", &brainfly_lif::v_decay_ },
  { "v_from_g", &brainfly_lif::v_from_g_ },
  { "g_decay", &brainfly_lif::g_decay_ },
  { "v_th", &brainfly_lif::v_th_ },
  { "v_rst", &brainfly_lif::v_rst_ },
  { "kick", &brainfly_lif::kick_ },
  { "v", &brainfly_lif::v_ },
  { "g", &brainfly_lif::g_ } };
const std::pair< const char*, long brainfly_lif::* > brainfly_lif::longs_[] = {
  { "frozen_steps", &brainfly_lif::frozen_steps_ },
  { "start_step", &brainfly_lif::start_step_ },
  { "frozen_left", &brainfly_lif::frozen_left_ } };

void
brainfly_lif::get_status( Dictionary& d ) const
{
  for ( const auto& [ key, member ] : doubles_ )
  {
    d[ key ] = this->*member;
  }
  for ( const auto& [ key, member ] : longs_ )
  {
    d[ key ] = this->*member;
  }
  d[ "n_pending" ] = static_cast< long >( pending_.size() );
  nest::ArchivingNode::get_status( d );
}

void
brainfly_lif::set_status( const Dictionary& d )
{
  // read into a copy first: a bad value leaves the node unchanged
  brainfly_lif next( *this );
  for ( const auto& [ key, member ] : doubles_ )
  {
    nest::update_value_param( d, key, next.*member, this );
  }
  for ( const auto& [ key, member ] : longs_ )
  {
    nest::update_value_param( d, key, next.*member, this );
  }
  if ( next.frozen_steps_ < 0 or next.frozen_left_ < 0 )
  {
    throw nest::BadProperty( "frozen_steps and frozen_left must be >= 0." );
  }
  nest::ArchivingNode::set_status( d );
  for ( const auto& entry : doubles_ )
  {
    this->*entry.second = next.*entry.second;
  }
  for ( const auto& entry : longs_ )
  {
    this->*entry.second = next.*entry.second;
  }
}

void
brainfly_lif::init_buffers_()
{
  pending_.clear();
  now_.clear();
  nest::ArchivingNode::clear_history();
}

void
brainfly_lif::pre_run_hook()
{
}

void
brainfly_lif::update( nest::Time const& origin, const long from, const long to )
{
  for ( long lag = from; lag < to; ++lag )
  {
    const long step = origin.get_steps() + lag;
    // the input landing in this step, in the order Brian2 adds it
    now_.clear();
    if ( not pending_.empty() )
    {
      auto keep = std::partition(
        pending_.begin(), pending_.end(), [ step ]( const Input& in ) { return in.step > step; } );
      now_.assign( keep, pending_.end() );
      pending_.erase( keep, pending_.end() );
      std::stable_sort( now_.begin(),
        now_.end(),
        []( const Input& a, const Input& b )
        { return a.step < b.step or ( a.step == b.step and a.sender < b.sender ); } );
    }
    if ( step < start_step_ )
    {
      continue;  // between trials: nothing happens, input is dropped
    }
    bool frozen = frozen_left_ > 0;
    if ( frozen )
    {
      --frozen_left_;
    }
    else
    {
      const double v_new = v_const_ + ( v_from_g_ * g_ + v_decay_ * v_ );
      g_ = g_decay_ * g_;
      v_ = v_new;
    }
    const bool spiked = ( not frozen ) and v_ > v_th_;
    if ( not frozen and not spiked )
    {
      for ( const Input& in : now_ )
      {
        if ( in.step != step )
        {
          continue;  // late input of an earlier step (cannot happen): dropped
        }
        if ( in.kick )
        {
          for ( long k = 0; k < static_cast< long >( in.w ); ++k )
          {
            v_ = v_ + kick_;
          }
        }
        else
        {
          g_ = g_ + in.w;
        }
      }
    }
    if ( spiked )
    {
      v_ = v_rst_;
      g_ = 0.0;
      frozen_left_ = frozen_steps_;
      set_spiketime( nest::Time::step( step + 1 ) );
      nest::SpikeEvent se;
      nest::kernel().event_delivery_manager.send( *this, se, lag );
    }
  }
}

}  // namespace brainfly

class brainflymodule : public nest::NESTExtensionInterface
{
public:
  void initialize() override
  {
    nest::register_node_model< brainfly::brainfly_lif >( "brainfly_lif" );
  }
};

brainflymodule brainflymodule_LTX_module;
