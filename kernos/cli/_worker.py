"""`kernos worker`: run a worker process until signalled, then shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from kernos import errors, runtime
from kernos.cli._session import _require_sqlite_file
from kernos.cli._settings import AppOption, StoreOption, import_apps, resolve, split_apps
from kernos.store import redact_url

__all__ = ["worker"]

logger = logging.getLogger("kernos.worker")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_AFTER = 1.0
"""Seconds after a first stop signal before another counts as a second request."""


class LogLevel(enum.StrEnum):
    """How much the worker logs to stderr."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What one ``kernos worker`` process serves, and how."""

    store: str
    queues: list[str] | None
    concurrency: int
    grace: float
    lease: float
    poll: float


def worker(
    ctx: typer.Context,
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queues",
            "-q",
            help="Queues to claim runs from, comma-separated or repeated (default: every queue).",
            metavar="NAMES",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", "-c", min=1, help="Runs executed at once.", metavar="N"),
    ] = 100,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file declaring queues and their limits, one \\[queues.NAME] table each.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0.0,
            help="On SIGTERM/SIGINT, seconds running runs may take to finish before they "
            "are interrupted and handed back.",
            metavar="SECONDS",
        ),
    ] = 30.0,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            help="Seconds a claim lasts without a heartbeat (heartbeats every lease/3).",
            metavar="SECONDS",
        ),
    ] = 30.0,
    poll: Annotated[
        float,
        typer.Option(
            "--poll",
            help="Seconds between claims when nothing wakes the worker.",
            metavar="SECONDS",
        ),
    ] = 0.5,
    log_level: Annotated[
        LogLevel,
        typer.Option("--log-level", case_sensitive=False, help="Log to stderr from this level."),
    ] = LogLevel.INFO,
    apps: AppOption = None,
    store: StoreOption = None,
) -> None:
    """Execute runs until stopped by SIGTERM or SIGINT.

    Imports the --app modules (their workflows, queues and schedules register on
    import), declares the queues of --config, then claims runs of those workflows
    from the chosen queues. On SIGTERM or SIGINT it claims nothing more and lets
    running runs finish for up to --grace seconds; what is still running then is
    interrupted and handed back to other workers, which resume it from its journal
    (a second signal skips the rest of the grace period).

    Example: kernos worker --app myapp.flows --queues llm,default --concurrency 20
    """
    settings = resolve(ctx, store=store, apps=apps)
    configure_logging(log_level)
    if not settings.apps:
        raise errors.UsageError(
            "no app modules to serve; pass --app MODULE (or set KERNOS_APP) naming the "
            "modules that define your workflows"
        )
    import_apps(settings.apps)
    if config is not None:
        runtime.load_queues(config)
    if not runtime.registry.names():
        raise errors.UsageError(
            f"the app modules {', '.join(settings.apps)} register no workflows; a worker "
            "only executes runs of workflows imported in it"
        )
    options = WorkerOptions(
        store=settings.store,
        queues=list(split_apps(queues)) or None,
        concurrency=concurrency,
        grace=grace,
        lease=lease,
        poll=poll,
    )
    asyncio.run(serve(options))


async def serve(options: WorkerOptions) -> None:
    """Open a worker app, work until a signal, then close it within the grace period."""
    _require_sqlite_file(options.store)
    app = runtime.Kernos(
        options.store,
        worker=True,
        migrate=False,
        concurrency=options.concurrency,
        lease=options.lease,
        poll_interval=options.poll,
        queues=options.queues,
    )
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    received: list[float] = []  # loop times of the stop requests
    hurried: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        now = loop.time()
        if received and now - received[0] < REPEAT_AFTER:
            # One stop request delivered twice (to the process and to its group, as
            # `timeout` and some supervisors do) is not a second request.
            logger.debug("%s received again at once: ignored", sig.name)
            return
        received.append(now)
        if len(received) == 1:
            logger.info(
                "%s received: stopping; running runs may finish within %ss (%s again stops now)",
                sig.name,
                f"{options.grace:g}",
                sig.name,
            )
            stopping.set()
            return
        logger.info("%s received again: interrupting running runs now", sig.name)
        task = loop.create_task(interrupt_running(app))
        hurried.add(task)
        task.add_done_callback(hurried.discard)

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        try:
            if await unless_stopped(app.open(), stopping):
                typer.echo(startup_line(app, options), err=True)
                await stopping.wait()
        finally:
            # A second signal during the grace period interrupts what still runs.
            await app.close(grace=options.grace if len(received) == 1 else 0.0)
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
    logger.info("stopped", extra={"worker": app.engine.worker_id})


async def unless_stopped(work: Awaitable[object], stopping: asyncio.Event) -> bool:
    """Await ``work`` unless ``stopping`` is set first (then cancel it and return False).

    A worker signalled while it opens (say, retrying an unreachable store) exits
    at once rather than when the store answers.
    """
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # its error, if it failed
    return True


async def interrupt_running(app: runtime.Kernos) -> None:
    """Interrupt every run executing here; the engine's stop then hands them back."""
    try:
        running = await app.list_runs(status="running", limit=100_000)
    except errors.StoreError as exc:  # closed already, or unreachable: nothing to hurry
        logger.warning("cannot list the running runs: %s", exc)
        return
    app.engine.stop_local([run.run_id for run in running if app.engine.is_local(run.run_id)])


def startup_line(app: runtime.Kernos, options: WorkerOptions) -> str:
    """``kernos worker <id> started: store=... queues=... concurrency=N pid=P``."""
    queues = ",".join(options.queues) if options.queues is not None else "all"
    return (
        f"kernos worker {app.engine.worker_id} started: store={redact_url(options.store)} "
        f"queues={queues} concurrency={options.concurrency} pid={os.getpid()} "
        f"workflows={len(runtime.registry.names())}"
    )


# -- logging ---------------------------------------------------------------------------

_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class _Formatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, the extras of a record appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS}
        if extras:
            line += " " + " ".join(f"{key}={_value(value)}" for key, value in extras.items())
        return line


def _value(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() for c in text) else text


def configure_logging(level: LogLevel) -> None:
    """Log records of ``level`` and above to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.value.upper())
