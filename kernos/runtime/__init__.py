"""The engine: workflows and steps, execution, recovery, replay and forks."""

from kernos.runtime._app import Kernos, RunHandle
from kernos.runtime._context import Divergence
from kernos.runtime._definitions import Step, Workflow, registry, step, workflow
from kernos.runtime._primitives import checkpoint, current_run_id, gather, recv, sleep
from kernos.runtime._replay import ReplayReport
from kernos.runtime._retry import RetryPolicy

__all__ = [
    "Divergence",
    "Kernos",
    "ReplayReport",
    "RetryPolicy",
    "RunHandle",
    "Step",
    "Workflow",
    "checkpoint",
    "current_run_id",
    "gather",
    "recv",
    "registry",
    "sleep",
    "step",
    "workflow",
]
