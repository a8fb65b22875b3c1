"""Benchmarks behind ``python -m jaxroute.launch.benchmark`` (private: not the library API).

Each benchmark returns a dict with ``ratio`` (baseline time / jaxroute time, or jaxroute
throughput / baseline throughput; higher is better for jaxroute, None without a
baseline), the raw figures, the threads used and a correctness check, and ``what``.
Baselines that need torch (never a jaxroute requirement) are skipped with ``why`` when
it is not importable; install it as docs/speed.md's ``bench`` line says.
"""
