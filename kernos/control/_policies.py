"""Tenant policies: check, apply, read and test YAML policy documents.

Applying stores a new version (the tenant's runs started afterwards use it;
runs already going keep the version they loaded). Testing decides every tool
call of a recorded run under a document, next to what was decided then.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kernos.control._audit import Auditor
from kernos.control._principal import Principal
from kernos.control._runs import RunService
from kernos.errors import NotFoundError
from kernos.records import EntryKind, EntryStatus, JournalEntry, PolicyVersion, Role, Run
from kernos.store import Store

if TYPE_CHECKING:
    from kernos.tools import PolicyDocument, PolicyProblem

__all__ = ["PolicyService", "PolicyTestRow", "check_policy_text", "parse_policy_text"]

MAX_DOCUMENT = 256 * 1024  # characters: a policy is configuration, not data


def check_policy_text(text: str, source: str = "policy.yaml") -> list[PolicyProblem]:
    """Every problem in a policy document (empty: valid). Needs no store or server."""
    from kernos.tools import PolicyProblem, check_policy

    if len(text) > MAX_DOCUMENT:
        return [
            PolicyProblem(
                source=source,
                line=1,
                column=1,
                path="",
                message=f"the document is over {MAX_DOCUMENT} characters",
            )
        ]
    return check_policy(text, source=source)


def parse_policy_text(
    text: str, source: str = "policy.yaml", name: str = "policy"
) -> PolicyDocument:
    """A valid policy document, parsed.

    Raises:
        PolicyError: it is invalid; ``problems`` locates each problem.
    """
    from kernos.tools import parse_policy
    from kernos.tools._policy_yaml import policy_error

    if len(text) > MAX_DOCUMENT:
        raise policy_error(source, check_policy_text(text, source))
    return parse_policy(text, source=source, name=name)


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyTestRow:
    """One recorded tool call and what a policy would decide on it.

    Attributes:
        seq: the call's journal position.
        tool: the tool called.
        arguments: the arguments the model gave (None when unreadable).
        agent: the agent that called it.
        recorded: the decision recorded then (allow, deny, needs_approval, invalid).
        decision: what the tested policy decides.
        rule: the deciding rule's id, or its one-line description; None for the default.
        line: the deciding rule's line in the document.
        reason: the decision's reason.
    """

    seq: int
    tool: str
    arguments: dict[str, Any] | None
    agent: str | None
    recorded: str | None
    decision: str
    rule: str | None
    line: int | None
    reason: str

    @property
    def changed(self) -> bool:
        """Whether the tested policy decides differently than was recorded."""
        return self.recorded != self.decision

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, and ``changed``."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["changed"] = self.changed
        return data


class PolicyService:
    """A tenant's policy documents: members read them, operators check and test
    documents, admins apply them."""

    def __init__(self, store: Store, runs: RunService, auditor: Auditor) -> None:
        self.store = store
        self.runs = runs
        self.audit = auditor

    def check(
        self, principal: Principal, text: str, source: str = "policy.yaml"
    ) -> list[PolicyProblem]:
        """Every problem in ``text`` (operator); nothing is stored."""
        principal.require(Role.OPERATOR, "checking policies")
        return check_policy_text(text, source)

    async def apply(
        self, principal: Principal, text: str, source: str = "policy.yaml"
    ) -> PolicyVersion:
        """Validate and store ``text`` as the tenant's next policy version (admin).

        Raises:
            PolicyError: the document is invalid; nothing was stored.
        """
        async with self.audit.audited(principal, "policy.apply", "policy", None) as note:
            principal.require(Role.ADMIN, "applying policies")
            document = parse_policy_text(text, source)
            stored = await self.store.put_policy(
                principal.tenant_id, text, document.sha256, principal.actor
            )
            note.object_id = str(stored.version)
            note.detail.update(version=stored.version, sha256=stored.sha256)
            return stored

    async def current(self, principal: Principal) -> PolicyVersion:
        """The tenant's current policy. Raises NotFoundError when it has none."""
        principal.require(Role.VIEWER, "reading policies")
        found = await self.store.current_policy(principal.tenant_id)
        if found is None:
            raise NotFoundError(
                f"tenant {principal.tenant_id!r} has no policy yet; apply one with "
                "'kernos policy apply FILE'",
                object_type="policy",
                object_id=None,
            )
        return found

    async def version(self, principal: Principal, version: int) -> PolicyVersion:
        """One version of the tenant's policy. Raises NotFoundError."""
        principal.require(Role.VIEWER, "reading policies")
        found = await self.store.get_policy(principal.tenant_id, version)
        if found is None:
            raise NotFoundError(
                f"tenant {principal.tenant_id!r} has no policy version {version}",
                object_type="policy",
                object_id=str(version),
            )
        return found

    async def versions(self, principal: Principal, *, limit: int = 100) -> list[PolicyVersion]:
        """The tenant's policy versions, newest first."""
        principal.require(Role.VIEWER, "reading policies")
        return await self.store.list_policies(principal.tenant_id, limit=limit)

    async def test(
        self, principal: Principal, text: str, run_id: str, source: str = "policy.yaml"
    ) -> list[PolicyTestRow]:
        """What ``text`` would decide on each tool call of a recorded run of the tenant (operator).

        Raises:
            PolicyError: the document is invalid.
            NotFoundError: no such run in the tenant.
        """
        principal.require(Role.OPERATOR, "testing policies")
        document = parse_policy_text(text, source, name=source)
        run = await self.runs.get(principal, run_id)
        journal = await self.runs.journal(principal, run_id)
        return decide_recorded(document, run, journal)


def decide_recorded(
    document: PolicyDocument, run: Run, journal: Sequence[JournalEntry]
) -> list[PolicyTestRow]:
    """Each settled tool call of ``journal`` with the decision ``document`` makes on it,
    in the context the call had: its agent, model, workflow, tenant and spend so far."""
    walk = _Walk(document, run)
    for entry in journal:
        if entry.kind is EntryKind.LLM and entry.status is EntryStatus.OK:
            walk.answer(entry)
        elif entry.kind is EntryKind.TOOL and entry.status is not EntryStatus.PENDING:
            if _dict(entry.detail).get("decision") == _APPROVED_RUN:
                continue  # the approved run of a call already decided in its own entry
            walk.call(entry)
    return walk.rows


_APPROVED_RUN = "approved"
"""The decision of the second ``tool`` entry an approved call runs in (kernos.agents)."""


class _Walk:
    """The journal read in order: the model's calls, the spend and the model so far."""

    def __init__(self, document: PolicyDocument, run: Run) -> None:
        self.document = document
        self.run = run
        self.rows: list[PolicyTestRow] = []
        self.calls: dict[str, dict[str, Any]] = {}  # call id -> the model's call
        self.pending: list[dict[str, Any]] = []  # the latest answer's calls, in order
        self.model: str | None = None
        self.spent: dict[str | None, tuple[int, float]] = {}  # agent -> (tokens, cost)

    def answer(self, entry: JournalEntry) -> None:
        detail = _dict(entry.detail)
        usage = _dict(detail.get("usage"))
        agent = _text(detail.get("agent"))
        tokens, cost = self.spent.get(agent, (0, 0.0))
        tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
        self.spent[agent] = (tokens, cost + float(usage.get("cost") or 0.0))
        self.model = entry.name
        self.pending = _tool_calls(entry.output)
        self.calls.update({str(c["id"]): c for c in self.pending if c.get("id")})

    def call(self, entry: JournalEntry) -> None:
        from kernos.tools import CallContext

        detail = _dict(entry.detail)
        found = self.calls.get(str(detail.get("call_id"))) or next(
            (c for c in self.pending if c.get("name") == entry.name), {}
        )
        if found in self.pending:
            self.pending.remove(found)
        arguments = _arguments(found.get("arguments"))
        agent = _text(detail.get("agent"))
        tokens, cost = self.spent.get(agent, (0, 0.0))
        decision = self.document.policy.decide(
            CallContext(
                tool=entry.name,
                arguments=arguments or {},
                agent=agent,
                workflow=self.run.workflow,
                tenant=self.run.tenant,
                model=self.model,
                cost_usd=cost,
                tokens=tokens,
            )
        )
        rule = decision.rule
        self.rows.append(
            PolicyTestRow(
                seq=entry.seq,
                tool=entry.name,
                arguments=arguments,
                agent=agent,
                recorded=_text(_dict(entry.output).get("decision") or detail.get("decision")),
                decision=decision.action.value,
                rule=None if rule is None else (rule.id or rule.describe()),
                line=decision.line,
                reason=decision.reason,
            )
        )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _tool_calls(output: Any) -> list[dict[str, Any]]:
    calls = _dict(output).get("tool_calls")
    return [call for call in calls or [] if isinstance(call, dict)]


def _arguments(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None
