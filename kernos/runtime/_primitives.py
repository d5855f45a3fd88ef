"""Durable primitives for workflow code: sleep, recv, checkpoint, gather.

Each takes its journal position when called, so the order of calls, not the
order in which awaits complete, numbers the journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from kernos import errors
from kernos.runtime import _context
from kernos.runtime._context import DivergenceFound, JournalEnd, StepScope, Suspend
from kernos.types import JSON

__all__ = ["checkpoint", "current_run_id", "current_step", "emit", "gather", "recv", "sleep"]


def sleep(seconds: float) -> Awaitable[None]:
    """Sleep durably: the wake-up time is journaled and survives restarts.

    Short sleeps (up to the app's ``inline_wait``) wait in place; longer ones let
    the worker go and the run is woken, on any worker, when the time comes. In a
    sync workflow the call blocks.

    Raises:
        NotInWorkflowError: outside a workflow.
    """
    ctx = _context.require("sleep")
    result: Awaitable[None] = ctx.dispatch(ctx.sleep(ctx.take_seq(), seconds))
    return result


def recv(topic: str = "default", *, timeout: float | None = None) -> Awaitable[JSON]:
    """Wait durably for the next message sent to this run on ``topic``.

    Messages sent before the run waits are kept and delivered in order, each
    exactly once. While nothing has arrived the run is suspended without
    holding a worker.

    Args:
        topic: the message topic.
        timeout: seconds to wait at most; on expiry the result is ``None``.

    Returns:
        The message payload (JSON), or ``None`` after ``timeout``.
    """
    ctx = _context.require("recv")
    result: Awaitable[JSON] = ctx.dispatch(ctx.recv(ctx.take_seq(), topic, timeout))
    return result


def checkpoint(name: str, state: Any = None) -> None:
    """Record a named checkpoint holding ``state``, with its SHA-256 checksum.

    The checksum is verified whenever the checkpoint is read back (recovery,
    :meth:`Kernos.restore`, forking at it). The write is queued without waiting;
    the run does not finish or suspend before it is durable.
    """
    _context.require("checkpoint").checkpoint(name, state)


def current_run_id() -> str:
    """The id of the run whose workflow code is executing."""
    return _context.require("current_run_id").run_id


def current_step() -> StepScope | None:
    """The journal entry the running step body is producing, or ``None`` outside one.

    A step body uses it to annotate its entry (``current_step().annotate(...)``)
    or to stream events while it works (``current_step().emit(...)``).
    """
    return _context.current_step()


def emit(kind: str, data: Any = None) -> None:
    """Append an event to the current run's event record, without waiting.

    Usable from workflow code and from step bodies (including sync steps in
    their threads). Events are observability only: they are not journaled, are
    not replayed (a replay emits nothing), and workflow code that re-executes
    after a crash emits them again. Outside any run, nothing happens. Name your
    kinds with a prefix of your own (``agent.usage``); the kernel's are
    ``run.*``, ``step.*``, ``llm.*``, ``tool.*``, ...

    Args:
        kind: the event's kind.
        data: a JSON-serializable payload.
    """
    scope = _context.current_step()
    if scope is not None:
        scope.emit(kind, data)
        return
    ctx = _context.active()
    if ctx is not None:
        ctx.emit(kind, data)


async def gather(*calls: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """Run durable calls concurrently and collect their results in order.

    Partial failure: every branch runs to completion, none is cancelled because
    another failed, so each finished branch is journaled and is not re-run on
    recovery. Then, if some branches failed, the first failure in argument order
    is raised, or with ``return_exceptions=True`` failures are returned in place.
    If any branch must wait (sleep, message, child), the run suspends once all
    branches have settled or begun waiting.

    Branches should be single durable calls (steps, child workflows, sleeps,
    receives). For a branch of several steps, use a child workflow: its steps
    then have a journal of their own and the numbering stays deterministic.
    """
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(
            result, errors.Cancelled | DivergenceFound | JournalEnd | asyncio.CancelledError
        ):
            raise result
    waits = [r for r in results if isinstance(r, Suspend)]
    if waits:
        raise Suspend.merge(waits)
    if not return_exceptions:
        for result in results:
            if isinstance(result, BaseException):
                raise result
    return list(results)
