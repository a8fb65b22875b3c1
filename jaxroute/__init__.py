"""jaxroute: LLM routing in JAX.

Data flows one way: ``data`` (RoutingData) -> ``encoders`` (features) -> ``models`` +
``losses`` -> ``train`` -> ``routing`` (rules, vmap'd sweeps, metrics) -> ``report``.
"""

__version__ = "0.1.0"
