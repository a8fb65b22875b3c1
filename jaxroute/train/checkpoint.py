"""Every orbax call of jaxroute lives here (STYLE.md: orbax in one module).

A :class:`Checkpointer` saves a train-state pytree after each epoch (``step`` = epoch
number), keeps the latest N and the best by a validation metric, and restores the latest
good one: a corrupt or partial latest checkpoint is reported and the previous one used.
Orbax writes each step to a temporary folder and renames it when complete, so a crash
mid-save leaves the last good checkpoint usable.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp
from orbax.checkpoint.checkpoint_managers import save_decision_policy as sdp


class Checkpointer:
    """Keeps ``keep`` latest checkpoints plus the best by ``metric`` (lower is better)."""

    def __init__(self, directory: str | os.PathLike, *, keep: int = 2, metric: str = "val_loss"):
        self.directory = os.path.abspath(os.fspath(directory))
        self.metric = metric
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
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, metrics: dict[str, float] | None = None) -> None:
        """Saves ``state`` at ``step`` (blocking: the file is complete on return)."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self._manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)
        self._manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def best_step(self) -> int | None:
        return self._manager.best_step()

    def restore(self, target: Any, step: int | None = None) -> tuple[int, Any] | None:
        """Restores the newest readable checkpoint (or ``step``) shaped like ``target``.

        Returns ``(step, state)``, or ``None`` when there is no checkpoint. A checkpoint
        that fails to read is logged and the previous one tried.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
        for s in candidates:
            try:
                state = self._manager.restore(s, args=ocp.args.StandardRestore(abstract))
            except Exception as e:  # noqa: BLE001 - any read failure means "try an older one"
                logging.warning(
                    "checkpoint %s/%s is unreadable (%s: %s); trying an older one",
                    self.directory,
                    s,
                    type(e).__name__,
                    str(e).splitlines()[0][:200] if str(e) else "",
                )
                if step is not None:
                    raise
                continue
            return s, state
        return None

    def close(self) -> None:
        self._manager.close()
