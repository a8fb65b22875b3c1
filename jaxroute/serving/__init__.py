"""Serving trained routers: restore a workdir's router once, calibrate it, route, serve."""

from jaxroute.serving.calibration import (
    CALIBRATION_FILE,
    calibrate_workdir,
    calibration_scores,
    read_calibration,
    resolve_target,
)
from jaxroute.serving.router import (
    POLICY_FIELDS,
    Policy,
    TrainedRouter,
    check_prompts,
    load_router,
    policy_fields,
    read_prompts_file,
)

__all__ = [
    "CALIBRATION_FILE",
    "POLICY_FIELDS",
    "Policy",
    "TrainedRouter",
    "calibrate_workdir",
    "calibration_scores",
    "check_prompts",
    "load_router",
    "policy_fields",
    "read_calibration",
    "read_prompts_file",
    "resolve_target",
]
