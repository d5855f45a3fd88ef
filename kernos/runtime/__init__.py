"""The engine: workflows and steps, execution, recovery, replay and forks."""

from kernos.retry import RetryPolicy
from kernos.runtime._app import Kernos, RunHandle
from kernos.runtime._approvals import ApprovalDecision, Escalate, approval
from kernos.runtime._context import Divergence, StepScope
from kernos.runtime._definitions import Step, Workflow, registry, step, workflow
from kernos.runtime._primitives import (
    checkpoint,
    current_run_id,
    current_step,
    emit,
    gather,
    recv,
    sleep,
)
from kernos.runtime._queues import Queue, load_queues
from kernos.runtime._replay import ReplayReport
from kernos.runtime._scheduler import schedule

__all__ = [
    "ApprovalDecision",
    "Divergence",
    "Escalate",
    "Kernos",
    "Queue",
    "ReplayReport",
    "RetryPolicy",
    "RunHandle",
    "Step",
    "StepScope",
    "Workflow",
    "approval",
    "checkpoint",
    "current_run_id",
    "current_step",
    "emit",
    "gather",
    "load_queues",
    "recv",
    "registry",
    "schedule",
    "sleep",
    "step",
    "workflow",
]
