"""Training parts for the taskprior tests (test_taskprior.py, test_taskprior_irt.py)."""

import numpy as np

from jaxroute import data as jdata


def training_part(x, q, c, tasks) -> jdata.RoutingData:
    """Features ``x``, quality ``q`` and cost ``c`` of two models (``m0``, ``m1``) with
    task labels ``tasks`` as a :class:`~jaxroute.data.RoutingData` (sample ids 0..N-1)."""
    return jdata.RoutingData(
        quality=q,
        cost=c,
        models=("m0", "m1"),
        tasks=tasks,
        sample_ids=np.array([str(i) for i in range(len(x))]),
        features=x,
    )
