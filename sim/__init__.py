"""Simulation: per-op roofline, collectives, results, CLI. ``from sim import simulate``."""

from sim.result import CapacityError, MemoryReport, Result
from sim.roofline import Bound, OpCost, cost_op
from sim.simulate import simulate

__all__ = ["Bound", "CapacityError", "MemoryReport", "OpCost", "Result", "cost_op", "simulate"]
