"""Named queues: limits shared by every worker, and enqueueing runs into them."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernos import errors
from kernos.records import QueueSpec
from kernos.runtime import _context
from kernos.runtime._definitions import Workflow

if TYPE_CHECKING:
    from kernos.runtime._app import RunHandle

__all__ = ["Queue", "load_queues", "queues"]

queues: dict[str, Queue] = {}
"""Queues declared in this process, by name."""


class Queue:
    """A named queue of runs, with limits that every worker obeys.

    Declare queues at import time, next to the workflows they carry::

        llm = kernos.Queue("llm", concurrency=10, key_concurrency=2,
                           rate_limit=100, rate_period=60)
        handle = await llm.enqueue(research, "topic", key="tenant-42", priority=5)

    Args:
        name: the queue's name.
        concurrency: runs executing at once from this queue, across all workers.
        worker_concurrency: runs executing at once from this queue in one worker.
        key_concurrency: runs executing at once per concurrency key (the ``key``
            given to :meth:`enqueue`, e.g. a tenant or an agent).
        rate_limit: runs that may start per ``rate_period`` seconds.
        rate_period: the window of ``rate_limit``, in seconds (default 1).
    """

    def __init__(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        key_concurrency: int | None = None,
        rate_limit: int | None = None,
        rate_period: float = 1.0,
    ) -> None:
        for label, value in (
            ("concurrency", concurrency),
            ("worker_concurrency", worker_concurrency),
            ("key_concurrency", key_concurrency),
            ("rate_limit", rate_limit),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise errors.ConfigError(
                    f"queue {name!r}: {label} must be a positive integer, got {value!r}",
                    queue=name,
                )
        if isinstance(rate_period, bool) or not isinstance(rate_period, int | float):
            raise errors.ConfigError(
                f"queue {name!r}: rate_period must be a number of seconds, got {rate_period!r}",
                queue=name,
            )
        if rate_period <= 0:
            raise errors.ConfigError(f"queue {name!r}: rate_period must be positive", queue=name)
        self.spec = QueueSpec(
            name=name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            key_concurrency=key_concurrency,
            rate_limit=rate_limit,
            rate_period=rate_period if rate_limit is not None else None,
        )
        queues[name] = self

    @property
    def name(self) -> str:
        """The queue's name."""
        return self.spec.name

    async def enqueue(
        self,
        workflow: Workflow[..., Any],
        *args: Any,
        priority: int = 0,
        key: str | None = None,
        depends_on: Sequence[str] = (),
        on_dep_failure: str = "cancel",
        delay: float | None = None,
        dedup_id: str | None = None,
        run_id: str | None = None,
        timeout: float | None = None,
        tenant: str | None = None,
        **kwargs: Any,
    ) -> RunHandle[Any]:
        """Put a run of ``workflow`` on this queue and return its handle at once.

        The run starts when a worker serving this queue claims it: higher
        ``priority`` first, then oldest first, within the queue's limits.
        Called inside a workflow, the enqueue is journaled: recovery does not
        enqueue twice.

        Args:
            workflow: the workflow to run; ``*args``/``**kwargs`` are its arguments.
            priority: larger runs sooner.
            key: the concurrency key counted by ``key_concurrency``.
            depends_on: run ids that must succeed before this run starts.
            on_dep_failure: ``"cancel"`` (default) cancels this run, with the reason
                recorded, when a dependency fails or is cancelled; ``"run"`` runs it anyway.
            delay: seconds before the run may start.
            dedup_id: while an unfinished run of this queue holds this id, enqueueing
                it again returns that run instead of a new one.
            run_id: the run's id (an idempotency key; default: a new id).
            timeout: seconds the run may take once started.
            tenant: the tenant the run belongs to (default: inside a workflow,
                the enqueuing run's tenant; elsewhere the default tenant).

        Raises:
            DependencyCycleError: ``depends_on`` would make a cycle (the error names it).
            UsageError: no Kernos app is open in this process.
        """
        from kernos.runtime._app import Kernos, RunHandle

        options: dict[str, Any] = {
            "priority": priority,
            "key": key,
            "depends_on": list(depends_on),
            "on_dep_failure": on_dep_failure,
            "delay": delay,
            "dedup_id": dedup_id,
            "run_id": run_id,
            "timeout": timeout,
        }
        if tenant is not None:  # absent otherwise: journaled enqueues keep their hash
            options["tenant"] = tenant
        ctx = _context.active()
        if ctx is not None and not ctx.replaying:
            enqueued_id = await ctx.call_enqueue(self.name, workflow, args, kwargs, options)
            assert ctx.engine is not None
            return RunHandle(ctx.engine.app, enqueued_id, workflow)
        if ctx is not None:
            raise errors.UsageError("enqueue cannot run during a replay")
        return await Kernos.current().enqueue(self.name, workflow, args, kwargs, **options)

    def __repr__(self) -> str:
        return f"<kernos queue {self.name}>"


_QUEUE_OPTIONS = {
    "concurrency",
    "worker_concurrency",
    "key_concurrency",
    "rate_limit",
    "rate_period",
}


def load_queues(path: str | Path) -> list[Queue]:
    """Declare the queues of a TOML file, one table per queue::

        [queues.llm]
        concurrency = 10
        key_concurrency = 2
        rate_limit = 100
        rate_period = 60

    Raises:
        ConfigError: the file is missing, not TOML, or names an unknown option.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise errors.ConfigError(f"cannot read queue config {path}: {exc}", path=str(path)) from exc
    tables = data.get("queues", {})
    if not isinstance(tables, dict):
        raise errors.ConfigError(
            f"{path}: queues must be tables, one [queues.NAME] per queue", path=str(path)
        )
    declared = []
    for name, options in tables.items():
        if not isinstance(options, dict):
            raise errors.ConfigError(f"{path}: [queues.{name}] must be a table", path=str(path))
        unknown = set(options) - _QUEUE_OPTIONS
        if unknown:
            raise errors.ConfigError(
                f"{path}: [queues.{name}] has unknown options {sorted(unknown)}; allowed: "
                f"{sorted(_QUEUE_OPTIONS)}",
                path=str(path),
            )
        declared.append(Queue(name, **options))
    return declared
