"""Engines: one module per simulator, all behind :class:`brainfly.engines.base.Engine`."""

from .base import Engine, SimulationInput, available_engines, engine_names, get_engine, prepare, register_engine

__all__ = ["Engine", "SimulationInput", "available_engines", "engine_names", "get_engine", "prepare",
           "register_engine"]
