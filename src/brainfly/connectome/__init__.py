"""Connectome stage: load, verify, download, cache, generate, look up neurons."""

from .network import Connectome

__all__ = ["Connectome"]
