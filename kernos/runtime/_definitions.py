"""Workflows and steps: the decorators users write and the registry behind them."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

from kernos.errors import RegistrationError
from kernos.records import EntryKind
from kernos.retry import RetryPolicy
from kernos.runtime import _context

__all__ = ["Step", "Workflow", "registry", "step", "workflow"]

P = ParamSpec("P")
R = TypeVar("R")


def _annotations(fn: Callable[..., Any]) -> tuple[Any, list[Any], dict[str, Any]]:
    """(return type, positional parameter types, parameter types by name), ``Any`` where
    unannotated or unresolvable (forward references that cannot be resolved stay plain JSON)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    parameters = inspect.signature(fn).parameters.values()
    positional = [
        hints.get(p.name, Any)
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    by_name = {p.name: hints.get(p.name, Any) for p in parameters}
    return hints.get("return", Any), positional, by_name


class Step(Generic[P, R]):
    """A function whose result is journaled: once it succeeds it never runs again.

    Inside a workflow, calling a step returns an awaitable that runs it (with
    retries and timeout) and journals its result; a sync step runs in a thread.
    In a sync workflow the call blocks and returns the result. Outside any
    workflow, or inside another step, a step is a plain function call.

    ``kind`` is the kind of journal entry the step writes: ``step`` for user
    steps; layers above the runtime journal model calls as ``llm`` and tool
    calls as ``tool`` entries through the same machinery (retries, timeout,
    fencing, group commit), so that replay, forks and views can tell them apart.
    Their events are named after the kind (``llm.completed``, ``tool.failed``).

    ``key``, when given, is called with the step's arguments and returns what
    identifies the call (JSON); its hash, not the arguments', is journaled and
    compared on recovery and replay. For calls whose arguments are large and
    can be summarized cheaply (a model call summarizes its conversation by a
    running digest instead of re-hashing every message each turn).

    ``write_behind`` returns a successful result as soon as its entry is queued
    for the journal, instead of once it is durable. Whatever the run does next
    that has side effects (a step, a wait, a child, the run's end) first waits
    until the entry is durable; only model calls (``llm`` steps) may start
    meanwhile, which hides the commit behind the model's latency. A crash
    before the commit runs the step again on recovery, as a crash just before
    it returned would; at worst a model call is repeated too.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        retry: RetryPolicy,
        timeout: float | None,
        kind: EntryKind = EntryKind.STEP,
        key: Callable[..., Any] | None = None,
        write_behind: bool = False,
    ) -> None:
        if kind not in _STEP_KINDS:
            raise RegistrationError(
                f"a step journals step, llm or tool entries, not {kind.value!r}", name=name
            )
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.kind = kind
        self.key = key
        self.write_behind = write_behind
        self.is_async = inspect.iscoroutinefunction(fn)
        self.return_type = _annotations(fn)[0]
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = _context.active()
        if ctx is None:
            return self.fn(*args, **kwargs)
        return typing.cast(R, ctx.dispatch(ctx.call_step(self, args, kwargs)))

    def __repr__(self) -> str:
        if self.kind is EntryKind.STEP:
            return f"<kernos step {self.name}>"
        return f"<kernos {self.kind.value} step {self.name}>"


_STEP_KINDS = frozenset({EntryKind.STEP, EntryKind.LLM, EntryKind.TOOL})


class Workflow(Generic[P, R]):
    """A durable function: its steps are journaled, so a run survives crashes.

    Start one with :meth:`kernos.Kernos.start`; inside another workflow, use
    :meth:`run_child`. Calling the workflow object directly calls the function
    (its steps then belong to the caller's run).
    """

    def __init__(
        self, fn: Callable[P, R], *, name: str, version: str, timeout: float | None
    ) -> None:
        self.fn = fn
        self.name = name
        self.version = version
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self.return_type, self.positional_types, self.parameter_types = _annotations(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def run_child(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[Any]:
        """Start this workflow as a child of the current run and await its result.

        The child is a run of its own (id ``<parent>.<seq>``), journaled and
        recoverable on its own; cancelling the parent cancels it.

        Raises:
            NotInWorkflowError: called outside a workflow.
            RunFailedError: when awaited, if the child failed or was cancelled.
        """
        ctx = _context.require("run_child")
        return typing.cast(Awaitable[Any], ctx.dispatch(ctx.call_child(self, args, kwargs)))

    def __repr__(self) -> str:
        return f"<kernos workflow {self.name} v{self.version}>"


@dataclass
class Registry:
    """Workflows known to this process, by name."""

    workflows: dict[str, Workflow[Any, Any]] = field(default_factory=dict)

    def add(self, wf: Workflow[Any, Any]) -> None:
        """Register ``wf``; a different function under a taken name is refused."""
        existing = self.workflows.get(wf.name)
        if existing is not None and _origin(existing.fn) != _origin(wf.fn):
            raise RegistrationError(
                f"two workflows are named {wf.name!r} ({_origin(existing.fn)} and "
                f"{_origin(wf.fn)}); pass name=... to @kernos.workflow to tell them apart",
                name=wf.name,
            )
        self.workflows[wf.name] = wf

    def get(self, name: str) -> Workflow[Any, Any] | None:
        """The workflow registered as ``name``, if any."""
        return self.workflows.get(name)

    def names(self) -> list[str]:
        """Every registered workflow name."""
        return sorted(self.workflows)


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


registry = Registry()


@overload
def workflow(fn: Callable[P, R], /) -> Workflow[P, R]: ...


@overload
def workflow(
    *, name: str | None = None, version: str = "1", timeout: float | None = None
) -> Callable[[Callable[P, R]], Workflow[P, R]]: ...


def workflow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    version: str = "1",
    timeout: float | None = None,
) -> Workflow[P, R] | Callable[[Callable[P, R]], Workflow[P, R]]:
    """Declare a durable workflow.

    Usable bare (``@kernos.workflow``) or with options. Workflow code must be
    deterministic given its step results: touch the world (I/O, clocks,
    randomness, LLMs) only inside steps.

    Args:
        name: the name runs record (default: the function's qualified name).
        version: recorded by every run; bump it when the code changes shape.
        timeout: seconds a run may take in all before it fails with RunTimeoutError.
    """

    def decorate(f: Callable[P, R]) -> Workflow[P, R]:
        if timeout is not None and timeout <= 0:
            raise RegistrationError(f"workflow timeout must be positive, got {timeout}")
        wf = Workflow(f, name=name or f.__qualname__, version=str(version), timeout=timeout)
        registry.add(wf)
        return wf

    return decorate(fn) if fn is not None else decorate


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    retries: int | RetryPolicy = 0,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int | RetryPolicy = 0,
    timeout: float | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Declare a step: a unit of work whose result is journaled before the run goes on.

    Args:
        name: the name the journal records (default: the function's qualified name).
        retries: how many times to retry a failed attempt with exponential backoff
            and jitter, or a :class:`RetryPolicy` for full control.
        timeout: seconds one attempt may take; past it the attempt fails with
            StepTimeoutError (retried like any transient failure). A sync step's
            thread cannot be killed: it is abandoned and its result ignored.
    """

    def decorate(f: Callable[P, R]) -> Step[P, R]:
        if timeout is not None and timeout <= 0:
            raise RegistrationError(f"step timeout must be positive, got {timeout}")
        return Step(f, name=name or f.__qualname__, retry=RetryPolicy.of(retries), timeout=timeout)

    return decorate(fn) if fn is not None else decorate
