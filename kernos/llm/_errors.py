"""Provider failures as Kernos errors whose messages say what to do.

Adapters catch their SDK's exceptions and describe them with the functions
here; the messages never contain the API key (see :func:`redact`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernos import errors
from kernos.llm._secret import Secret, redact

__all__ = ["ErrorContext", "body_message", "connection_error", "status_error", "timeout_error"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorContext:
    """What every error message of one provider object names.

    Attributes:
        provider: the provider's name.
        model: the model asked for.
        base_url: where requests go.
        key_env: the environment variable the key comes from.
        secret: the key, to be masked wherever a message might echo it.
        model_hint: advice appended when the model is unknown.
        connect_hint: advice appended when the server cannot be reached.
    """

    provider: str
    model: str
    base_url: str
    key_env: str
    secret: Secret | None = None
    model_hint: str = ""
    connect_hint: str = ""


def body_message(body: Any) -> str:
    """The human-readable message inside a provider's error body, whatever its shape."""
    for _ in range(3):
        if isinstance(body, Mapping) and "error" in body:
            body = body["error"]
        else:
            break
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail")
        if message:
            return str(message)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    return str(body) if body else ""


def body_code(body: Any) -> str | None:
    """The machine-readable error code or type inside an error body, if any."""
    for _ in range(3):
        if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            body = body["error"]
        else:
            break
    if isinstance(body, Mapping):
        code = body.get("code") or body.get("type")
        return str(code) if code else None
    return None


def _after(attempts: int) -> str:
    return f" after {attempts} attempts" if attempts > 1 else ""


def _detail(ctx: ErrorContext, detail: str) -> str:
    detail = redact(detail.strip(), ctx.secret)
    return f": {detail}" if detail else ""


def status_error(
    ctx: ErrorContext,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    retry_after: float | None = None,
    attempts: int = 1,
) -> errors.ProviderError:
    """The Kernos error for an HTTP error status from the provider."""
    facts: dict[str, Any] = {
        "provider": ctx.provider,
        "model": ctx.model,
        "status": status,
        "attempts": attempts,
    }
    said = _detail(ctx, detail)
    who = f"{ctx.provider} ({status})"
    if status in (401, 403):
        return errors.ProviderAuthError(
            f"{who} refused the credentials{said}. Set {ctx.key_env} (or api_key in the "
            f"config file) or pass api_key= to kernos.llm.connect().",
            **facts,
        )
    if status == 429:
        wait = f", or wait {retry_after:g}s as it asks" if retry_after is not None else ""
        return errors.ProviderRateLimitError(
            f"{who} rate-limited model {ctx.model!r}{_after(attempts)}{said}. Send fewer "
            f"requests (rate_limit= on kernos.llm.connect()){wait}.",
            retry_after=retry_after,
            **facts,
        )
    if status == 404 and _about_model(detail, code):
        return errors.ModelNotFoundError(
            f"{who} has no model {ctx.model!r}{said}. Check the model name in "
            f"'{ctx.provider}:{ctx.model}'{ctx.model_hint}.",
            **facts,
        )
    if status in (408, 409) or status >= 500:
        return errors.ProviderUnavailableError(
            f"{who} failed for model {ctx.model!r}{_after(attempts)}{said}. The provider is "
            "having trouble; try again later.",
            retry_after=retry_after,
            **facts,
        )
    where = f" Check the base URL {ctx.base_url}." if status == 404 else ""
    return errors.ProviderBadRequestError(
        f"{who} rejected the request for model {ctx.model!r}{said}. Fix the request; "
        f"retrying will not help.{where}",
        **facts,
    )


def _about_model(detail: str, code: str | None) -> bool:
    return (code or "") in ("model_not_found", "not_found_error") or "model" in detail.lower()


def timeout_error(
    ctx: ErrorContext, timeout: float | None, attempts: int = 1
) -> errors.ProviderError:
    """The Kernos error for a call that ran past its timeout."""
    within = f" within {timeout:g}s" if timeout is not None else " in time"
    return errors.ProviderTimeoutError(
        f"{ctx.provider} did not answer{within} for model {ctx.model!r}{_after(attempts)}. "
        "Raise timeout= (per call or on kernos.llm.connect()) or try again later.",
        provider=ctx.provider,
        model=ctx.model,
        status=None,
        attempts=attempts,
        timeout=timeout,
    )


def connection_error(ctx: ErrorContext, detail: str, attempts: int = 1) -> errors.ProviderError:
    """The Kernos error for a provider that could not be reached."""
    return errors.ProviderUnavailableError(
        f"cannot reach {ctx.provider} at {ctx.base_url}{_after(attempts)}"
        f"{_detail(ctx, detail)}. Check the base URL and the network{ctx.connect_hint}.",
        provider=ctx.provider,
        model=ctx.model,
        status=None,
        attempts=attempts,
        retry_after=None,
    )


def stream_error(ctx: ErrorContext, detail: str, attempts: int = 1) -> errors.ProviderError:
    """The Kernos error for a failure the provider reported in the middle of a stream."""
    return errors.ProviderUnavailableError(
        f"{ctx.provider} failed while streaming model {ctx.model!r}{_detail(ctx, detail)}. "
        "Try again.",
        provider=ctx.provider,
        model=ctx.model,
        status=None,
        attempts=attempts,
        retry_after=None,
    )
