"""Collection for the whole repository (pytest's rootdir conftest, not shipped).

The absl apps (jaxroute/launch/<app>.py) define process-global flags at import, so two
of them cannot be imported into one process, which is what --doctest-modules would do;
they hold no doctests and are tested as subprocesses (tests/launch). Their shared
module, jaxroute/launch/common.py, is still collected.
"""

import pathlib

_LAUNCH = pathlib.Path(__file__).parent / "jaxroute" / "launch"
collect_ignore = [
    str(p) for p in _LAUNCH.glob("*.py") if p.name not in ("common.py", "__init__.py")
]
