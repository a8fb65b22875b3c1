"""Test helpers: the straightforward NumPy loop over budgets that the jitted sweep must
equal, and its random problem (the same ones the private sweep benchmark times)."""

from jaxroute._bench.sweep import numpy_loop_sweep, synthetic_problem

__all__ = ["numpy_loop_sweep", "synthetic_problem"]
