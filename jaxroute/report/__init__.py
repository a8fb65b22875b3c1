"""Report: evaluation results → report.json, report.md and matplotlib figures."""

from jaxroute.report.report import (
    aggregate_seeds,
    build_report,
    fitted_table,
    headline_table,
    model_colour,
    rule_table,
    write_report,
)

__all__ = [
    "aggregate_seeds",
    "build_report",
    "fitted_table",
    "headline_table",
    "model_colour",
    "rule_table",
    "write_report",
]
