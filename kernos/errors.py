"""Every error Kernos raises, sorted by who has to act.

    KernosError                       base of everything below
    ├── UsageError                    a developer mistake: fix the code or config
    │   ├── ConfigError               bad store URL, option or setting
    │   ├── RegistrationError         a workflow or step registered wrongly
    │   ├── SerializationError        a value that cannot be journaled as JSON
    │   ├── NotInWorkflowError        a durable primitive used outside a workflow
    │   ├── InvalidForkError          fork asked for a position the journal lacks
    │   ├── DependencyCycleError      run dependencies would form a cycle
    │   └── PolicyError               a policy document is invalid (each problem located)
    ├── RuntimeFailure                something failed at run time
    │   ├── StoreError                the store misbehaved
    │   │   ├── StoreUnavailableError unreachable or locked past the retry limit
    │   │   ├── MigrationError        the schema could not be brought up to date
    │   │   └── LeaseLostError        another worker owns the run now (fencing)
    │   ├── RunNotFoundError          no run with that id
    │   ├── RunStateError             the run's status does not allow the operation
    │   ├── WorkflowNotFoundError     a run names a workflow this process lacks
    │   ├── NondeterminismError       recovered code diverged from the journal
    │   ├── ChecksumMismatchError     a checkpoint snapshot failed verification
    │   ├── StepTimeoutError          a step attempt ran past its timeout
    │   ├── StepError                 a recorded step failure whose type could not be rebuilt
    │   ├── RunTimeoutError           the whole run ran past its timeout
    │   ├── ApprovalExpiredError      an approval timed out and its default is "fail"
    │   ├── SandboxError              the shell tool's sandbox could not be set up
    │   ├── RunFailedError            awaiting a run that failed or was cancelled
    │   │   └── RunCancelledError     ... specifically, that was cancelled
    │   └── ProviderError             an LLM provider call failed
    │       ├── ProviderAuthError         the key was refused (permanent)
    │       ├── ProviderBadRequestError   the provider refused the request (permanent)
    │       │   └── ModelNotFoundError    no such model, or no access to it
    │       ├── ProviderRateLimitError    still rate limited after the retries (transient)
    │       ├── ProviderTimeoutError      no answer within the call's timeout (transient)
    │       └── ProviderUnavailableError  unreachable or failing (5xx) after the retries (transient)
    ├── AccessError                   the caller may not do this (the server answers 4xx)
    │   ├── AuthenticationError       missing, malformed, expired, revoked or forged credentials
    │   ├── PermissionDeniedError     authenticated, but the role does not allow it
    │   ├── NotFoundError             no such object in the caller's tenant
    │   ├── ConflictError             the object's state or an earlier request conflicts
    │   └── RateLimitedError          too many requests; retry after ``retry_after`` seconds
    ├── PermanentError                raise from a step: fail now, never retry
    ├── TransientError                raise from a step: always worth a retry
    └── ToolError                     raise from a tool: the message goes back to the model

    Cancelled (BaseException)         a run was cancelled; steps must not swallow it

Provider errors marked permanent also derive from :class:`PermanentError`, the
transient ones from :class:`TransientError`, so step retry policies treat them
accordingly.

Each error keeps its facts as attributes, has a stable ``code`` and survives
pickling, so it can be stored in the journal or cross a process boundary.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessError",
    "ApprovalExpiredError",
    "AuthenticationError",
    "Cancelled",
    "ChecksumMismatchError",
    "ConfigError",
    "ConflictError",
    "DependencyCycleError",
    "InvalidForkError",
    "KernosError",
    "LeaseLostError",
    "MigrationError",
    "ModelNotFoundError",
    "NondeterminismError",
    "NotFoundError",
    "NotInWorkflowError",
    "PermanentError",
    "PermissionDeniedError",
    "PolicyError",
    "ProviderAuthError",
    "ProviderBadRequestError",
    "ProviderError",
    "ProviderRateLimitError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RegistrationError",
    "RunCancelledError",
    "RunFailedError",
    "RunNotFoundError",
    "RunStateError",
    "RunTimeoutError",
    "RuntimeFailure",
    "SandboxError",
    "SerializationError",
    "StepError",
    "StepTimeoutError",
    "StoreError",
    "StoreUnavailableError",
    "ToolError",
    "TransientError",
    "UsageError",
    "WorkflowNotFoundError",
]


class KernosError(Exception):
    """Base class of every Kernos error.

    Subclasses set ``code``, a stable identifier that survives renames of the
    message and is what the journal and the API record.
    """

    code = "kernos_error"

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message = message
        self.facts = facts
        for key, value in facts.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.facts))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[KernosError], message: str, facts: dict[str, Any]) -> KernosError:
    error = cls.__new__(cls)
    KernosError.__init__(error, message, **facts)
    return error


class UsageError(KernosError):
    """A developer mistake: the code or configuration must change."""

    code = "usage_error"


class ConfigError(UsageError):
    """A setting, store URL or option is invalid."""

    code = "config_error"


class RegistrationError(UsageError):
    """A workflow or step was declared in a way Kernos cannot run."""

    code = "registration_error"


class SerializationError(UsageError):
    """A step result, argument or state cannot be stored as JSON."""

    code = "serialization_error"


class NotInWorkflowError(UsageError):
    """A durable primitive (sleep, recv, checkpoint, ...) was used outside a workflow."""

    code = "not_in_workflow"


class InvalidForkError(UsageError):
    """A fork was asked for at a position the run's journal does not have."""

    code = "invalid_fork"


class DependencyCycleError(UsageError):
    """Enqueueing a run with these dependencies would create a cycle.

    Attributes:
        cycle: the run ids around the cycle, starting and ending with the new run.
    """

    code = "dependency_cycle"


class PolicyError(UsageError):
    """A policy document is invalid; nothing was stored or changed.

    Attributes:
        source: the document's name (a file name, or ``policy.yaml``).
        problems: every problem found, each a dict with ``source``, ``line``,
            ``column`` (1-based), ``path`` (``rules[2].action``) and ``message``.
        errors: the same problems as the API's field errors (``loc``, ``msg``, ``type``).
    """

    code = "policy_invalid"


class RuntimeFailure(KernosError):
    """Something failed while running; the code may be correct."""

    code = "runtime_failure"


class StoreError(RuntimeFailure):
    """The store failed or returned something unexpected."""

    code = "store_error"


class StoreUnavailableError(StoreError):
    """The store stayed unreachable or locked after every retry."""

    code = "store_unavailable"


class MigrationError(StoreError):
    """The schema could not be migrated to the version this code needs."""

    code = "migration_error"


class LeaseLostError(StoreError):
    """This process no longer owns the run: its lease expired or it was taken over."""

    code = "lease_lost"


class RunNotFoundError(RuntimeFailure):
    """No run exists with the given id."""

    code = "run_not_found"


class RunStateError(RuntimeFailure):
    """The run's current status does not allow the operation (e.g. resuming a finished run)."""

    code = "run_state"


class WorkflowNotFoundError(RuntimeFailure):
    """A run names a workflow that is not registered in this process."""

    code = "workflow_not_found"


class NondeterminismError(RuntimeFailure):
    """Workflow code asked for something other than what the journal recorded.

    Attributes:
        run_id: the run being recovered.
        seq: the journal position where code and journal disagree.
        expected: what the journal holds at ``seq``.
        found: what the code asked for at ``seq``.
    """

    code = "nondeterminism"


class ChecksumMismatchError(RuntimeFailure):
    """A stored checkpoint snapshot does not match its SHA-256 checksum."""

    code = "checksum_mismatch"


class StepTimeoutError(RuntimeFailure):
    """One attempt of a step ran longer than the step's timeout."""

    code = "step_timeout"


class StepError(RuntimeFailure):
    """A step's recorded failure, raised again where its original type is unavailable."""

    code = "step_error"


class RunTimeoutError(RuntimeFailure):
    """A run ran longer than its run timeout."""

    code = "run_timeout"


class ApprovalExpiredError(RuntimeFailure):
    """An approval request timed out at its last level and its default is ``fail``.

    Raised by :func:`kernos.approval` in the run that asked; the run fails
    unless the workflow catches it.

    Attributes:
        approval_id: the request that expired.
        run_id: the run that made it.
    """

    code = "approval_expired"


class SandboxError(RuntimeFailure):
    """The shell tool's sandbox could not be set up, so the command did not run.

    Never raised for a command that ran and failed: that is a result. The
    message names the missing piece and how to provide it.

    Attributes:
        mode: the sandbox asked for (``"auto"``, ``"bwrap"`` or ``"landlock"``).
        reason: what failed, e.g. the sandbox program's own error output.
    """

    code = "sandbox_unavailable"


class RunFailedError(RuntimeFailure):
    """The awaited run ended without a result.

    Attributes:
        run_id: the run.
        error_type: the qualified type name of the error that ended it.
        error_code: that error's stable code, when it was a Kernos error.
    """

    code = "run_failed"


class RunCancelledError(RunFailedError):
    """The awaited run was cancelled."""

    code = "run_cancelled"


class AccessError(KernosError):
    """The caller may not do what it asked; nothing was changed."""

    code = "access_error"


class AuthenticationError(AccessError):
    """The request carries no credentials, or ones that are malformed, expired or revoked."""

    code = "unauthenticated"


class PermissionDeniedError(AccessError):
    """The caller is authenticated but its role in the tenant does not allow this."""

    code = "permission_denied"


class NotFoundError(AccessError):
    """No object of ``object_type`` with ``object_id`` exists in the caller's tenant."""

    code = "not_found"


class ConflictError(AccessError):
    """The request conflicts with the object's state or with an earlier request."""

    code = "conflict"


class RateLimitedError(AccessError):
    """Too many requests; ``retry_after`` says how many seconds to wait."""

    code = "rate_limited"


class PermanentError(KernosError):
    """Raise from a step to fail it at once: retrying cannot help."""

    code = "permanent"


class TransientError(KernosError):
    """Raise from a step to say the failure is worth a retry."""

    code = "transient"


class ToolError(KernosError):
    """Raise from a tool to fail the call with a message meant for the model.

    The tool call then returns an error result whose text is the message alone
    (other exceptions are reported with their type name as well). The message is
    read by the model, so it says what was wrong with the call and never leaks
    host details such as absolute paths.

    Attributes:
        reason: a short stable word for what went wrong (``"outside"``,
            ``"not_found"``, ``"denied"``, ...), when the tool gives one.
    """

    code = "tool_error"


class ProviderError(RuntimeFailure):
    """An LLM provider call failed.

    Attributes:
        provider: the provider's name (``openai``, ``anthropic``, ``ollama``, ...).
        model: the model asked for.
        status: the HTTP status the provider answered with, if it answered.
        attempts: how many attempts were made before giving up.
    """

    code = "provider_error"


class ProviderAuthError(ProviderError, PermanentError):
    """The provider refused the credentials (401/403): set or fix the API key."""

    code = "provider_auth"


class ProviderBadRequestError(ProviderError, PermanentError):
    """The provider refused the request itself; its message says why."""

    code = "provider_bad_request"


class ModelNotFoundError(ProviderBadRequestError):
    """The provider has no such model, or this key has no access to it."""

    code = "model_not_found"


class ProviderRateLimitError(ProviderError, TransientError):
    """The provider kept answering 429 after every retry.

    Attributes:
        retry_after: seconds the provider asked to wait, when it said.
    """

    code = "provider_rate_limited"


class ProviderTimeoutError(ProviderError, TransientError):
    """The provider did not answer within the call's timeout."""

    code = "provider_timeout"


class ProviderUnavailableError(ProviderError, TransientError):
    """The provider was unreachable or failed (5xx) after every retry."""

    code = "provider_unavailable"


class Cancelled(BaseException):
    """The run was cancelled.

    Derived from ``BaseException`` (as ``asyncio.CancelledError`` is) so that a
    step's ``except Exception`` cannot swallow it.
    """

    def __init__(self, run_id: str, reason: str = "cancelled") -> None:
        super().__init__(f"run {run_id!r} was cancelled: {reason}")
        self.run_id = run_id
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.reason))
