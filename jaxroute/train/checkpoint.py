"""Every orbax call of jaxroute lives here (docs/design.md: orbax in one module).

A :class:`Checkpointer` saves a train-state pytree after each epoch (``step`` = epoch
number), keeps the latest N and the best by a validation metric, and restores the latest
good one. Orbax writes each step to a temporary folder and renames it when complete, so
a crash mid-save leaves the last good checkpoint usable.

Faults, and what happens (docs/reliability.md):

- A step that cannot be read (files overwritten, ``manifest.ocdbt`` truncated, a
  half-copied folder) is *moved aside*, never deleted: ``<dir>/<step>`` becomes
  ``<dir>/<step>.corrupt-<UTC time>``, one warning line names both, and the previous
  step is tried. Training then redoes the lost epochs and saves the step again (before,
  orbax kept the unreadable step in its list and every later run failed with
  "Checkpoint for step N already exists").
- A save that fails (disk full, permissions, any OS error) raises :class:`CheckpointError`
  with one line naming the step folder and the OS reason; the library's own traceback
  goes to the debug log (``--verbosity=1``).
- Read-only users (``evaluate``, ``route``) open the folder with ``read_only=True``: a
  missing ``checkpoints/`` folder is reported, never recreated, and nothing is moved.
"""

from __future__ import annotations

import errno
import os
import time
import traceback
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp
from orbax.checkpoint.checkpoint_managers import save_decision_policy as sdp


class CheckpointError(RuntimeError):
    """A checkpoint could not be saved or restored (the message is one line)."""


_TEXT_ERRNOS = [
    getattr(errno, n)
    for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO", "EMFILE", "ENOENT")
    if hasattr(errno, n)
]


def os_reason(e: BaseException) -> str:
    """The first OS-level reason in an exception chain (e.g. "No space left on device"),
    else the exception's first line. Orbax and TensorStore wrap OS errors in their own
    exceptions; the errno text is what a user can act on."""
    seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno:
            return f"{os.strerror(x.errno)} [{errno.errorcode.get(x.errno, x.errno)}]"
        stack += [x.__cause__, x.__context__]
    text = str(e)
    for code in _TEXT_ERRNOS:  # TensorStore reports OS errors in its message text only
        if os.strerror(code) in text:
            return f"{os.strerror(code)} [{errno.errorcode[code]}]"
    first = text.splitlines()[0] if text else ""
    first = first if len(first) <= 160 else first[:157] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _log_detail(what: str, e: BaseException) -> None:
    """The full library traceback, only at ``--verbosity=1`` (absl's debug level)."""
    logging.debug("%s:\n%s", what, "".join(traceback.format_exception(e)))


class Checkpointer:
    """Keeps ``keep`` latest checkpoints plus the best by ``metric`` (lower is better).

    ``read_only=True`` opens an existing folder for restoring only (raises
    :class:`CheckpointError` when it is missing; never creates or moves anything).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 2,
        metric: str = "val_loss",
        read_only: bool = False,
    ):
        self.directory = os.path.abspath(os.fspath(directory))
        self.metric = metric
        self.read_only = read_only
        if read_only:
            if not os.path.isdir(self.directory):
                raise CheckpointError(f"{self.directory}: no such checkpoint folder")
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, save_interval_steps=0
            )
        else:
            policy = pp.AnyPreservationPolicy(
                [
                    pp.LatestN(n=keep),
                    pp.BestN(get_metric_fn=lambda m: m[metric], reverse=True, n=1),
                ]
            )
            options = ocp.CheckpointManagerOptions(
                save_decision_policy=sdp.ContinuousCheckpointingPolicy(),
                preservation_policy=policy,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
            )
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:  # noqa: BLE001 - one line, detail at --verbosity=1
            _log_detail(f"opening {self.directory}", e)
            raise CheckpointError(f"{self.directory}: cannot open ({os_reason(e)})") from None

    def save(self, step: int, state: Any, metrics: dict[str, float] | None = None) -> None:
        """Saves ``state`` at ``step`` (blocking: the file is complete on return).

        Raises:
          CheckpointError: one line naming the step folder and the OS reason.
        """
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        try:
            self._manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - one line, detail at --verbosity=1
            _log_detail(f"saving {self.directory}/{step}", e)
            raise CheckpointError(
                f"cannot save checkpoint {self.directory}/{step}: {os_reason(e)}"
            ) from None

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def best_step(self) -> int | None:
        return self._manager.best_step()

    def _quarantine(self, step: int, e: BaseException) -> None:
        """Moves an unreadable step folder aside (one warning line), so it is retried."""
        src = os.path.join(self.directory, str(step))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dst = f"{src}.corrupt-{stamp}"
        try:
            if jax.process_index() == 0:  # several processes: process 0 moves, all reload
                os.rename(src, dst)
        except OSError as err:
            raise CheckpointError(
                f"checkpoint {src} is unreadable ({os_reason(e)}) and cannot be moved aside "
                f"({os_reason(err)}); move or delete it by hand"
            ) from None
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"jaxroute:quarantine:{src}")
        logging.warning(
            "checkpoint %s is unreadable (%s); moved aside to %s, resuming from an older step",
            src,
            os_reason(e),
            os.path.basename(dst),
        )
        self._manager.reload()

    def restore(self, target: Any, step: int | None = None) -> tuple[int, Any] | None:
        """Restores the newest readable checkpoint (or ``step``) shaped like ``target``.

        Returns ``(step, state)``, or ``None`` when no readable checkpoint is left.
        Without ``step``, an unreadable step is moved aside (see the module docstring)
        and the previous one tried; a read-only Checkpointer only logs and skips it.

        Raises:
          CheckpointError: ``step`` was asked for and cannot be read (one line).
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        if step is not None:
            have = self.steps()
            if step not in have:
                raise CheckpointError(
                    f"{self.directory}: no checkpoint at step {step} (steps present: {have})"
                )
            try:
                return step, self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # noqa: BLE001 - one line, detail at --verbosity=1
                _log_detail(f"restoring {self.directory}/{step}", e)
                raise CheckpointError(
                    f"checkpoint {self.directory}/{step} is unreadable ({os_reason(e)})"
                ) from None
        for s in sorted(self.steps(), reverse=True):
            try:
                return s, self._manager.restore(s, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # noqa: BLE001 - any read failure: try an older one
                _log_detail(f"restoring {self.directory}/{s}", e)
                if self.read_only:
                    logging.warning(
                        "checkpoint %s/%s is unreadable (%s); trying an older one",
                        self.directory,
                        s,
                        os_reason(e),
                    )
                    continue
                self._quarantine(s, e)
        return None

    def close(self) -> None:
        self._manager.close()
