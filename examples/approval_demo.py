"""Part of ``make demo``: people in the loop, a policy and a webhook, over HTTP.

``kernos up --app examples/approval_demo.py`` registers what this module defines:

- ``expense``: a workflow that waits for a person's approval
  (``kernos.approval``): any operator for an hour, then an admin for a day, then
  it is rejected by default;
- ``agent:demo-publisher``: an agent whose ``publish`` tool the tenant's policy
  (:data:`POLICY`, applied over the API) sends for approval. Its model is the
  bundled fake OpenAI server the demo starts (its URL in
  ``KERNOS_DEMO_FAKE_LLM_URL``), or ``KERNOS_DEMO_MODEL`` as in ``agent_demo.py``.

:func:`show` then drives the server over its REST API only: a webhook to a
receiver on loopback that checks every signature, an operator who is not the
requester, approvals, a rejection, a tool call approved with edited arguments,
and the deliveries the receiver got.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import agent_demo  # a sibling: kernos up and the demo both put examples/ on sys.path
import httpx
from rich.console import Console
from rich.markup import escape

import kernos
from kernos import agents, errors, llm, tools
from kernos.control import verify_webhook
from kernos.testing import FakeOpenAI, FakeToolCall

console = Console(width=110)

FAKE_URL_ENV = "KERNOS_DEMO_FAKE_LLM_URL"
OPERATOR = "olivia"
OPERATOR_PASSWORD = "olivia-demo-password"  # a demo account on a loopback server
DRAFT = "Kernos 0.1 is out!!! The best agent OS ever, nothing else comes close."
EDITED = "Kernos 0.1 is out: durable agents, approvals, policies and a dashboard."
TASK = "Announce the Kernos 0.1 release on the blog channel."

POLICY = """\
version: 1
default: allow
rules:
  - id: publishing-needs-a-person
    tools: [publish]
    action: needs_approval
    approvers: {roles: [operator], timeout: 3600,
                escalate: [{to: {roles: [admin]}, after: 86400}], default: reject}
"""

# ---------------------------------------------------------------- served by `kernos up`


@kernos.step
def reimburse(employee: str, amount: int) -> str:
    """Pretend to pay an expense back (a real workflow would call the bank here)."""
    return f"transfer of {amount} EUR to {employee}"


@kernos.workflow(name="expense", version="1")
async def expense(employee: str, amount: int, purpose: str) -> dict[str, Any]:
    """Pay an expense back once a person approves it."""
    decision = await kernos.approval(
        f"Reimburse {amount} EUR to {employee}?",
        {"employee": employee, "amount": amount, "purpose": purpose},
        assignees=["operator"],  # level 0: any operator, for an hour
        timeout=3600,
        escalation=[kernos.Escalate(to=["admin"], after=86400)],  # then an admin, a day
        default="reject",  # then nobody decided: rejected
    )
    if not decision.approved:
        return {"paid": False, "by": decision.decided_by, "comment": decision.comment}
    receipt = await reimburse(employee, amount)
    return {"paid": True, "receipt": receipt, "by": decision.decided_by}


@tools.tool
def publish(channel: str, text: str) -> str:
    """Publish a post.

    Args:
        channel: where to post (``blog``, ``news``).
        text: the post.
    """
    return f"posted to #{channel}: {text}"


def _publisher_provider() -> llm.Provider:
    fake_url = os.environ.get(FAKE_URL_ENV)
    if fake_url:
        return llm.connect(agent_demo.FAKE_MODEL, base_url=fake_url, api_key="demo-key", retries=0)
    return llm.connect(PUBLISHER_MODEL)


PUBLISHER_MODEL = agent_demo.real_model() or agent_demo.FAKE_MODEL
publisher = agents.Agent(
    "demo-publisher",
    PUBLISHER_MODEL,
    instructions="Publish what you are asked to with the publish tool, then say what you did.",
    tools=[publish],
    budget=agents.Budget(turns=4, tokens=10_000, cost_usd=0.02),
    provider=_publisher_provider,
)


def start_model() -> tuple[dict[str, str], FakeOpenAI | None]:
    """The server's environment for the publisher's model, and the fake server if used."""
    if agent_demo.real_model() is not None:
        return {}, None
    fake = FakeOpenAI().start()
    draft = FakeToolCall(name="publish", arguments={"channel": "blog", "text": DRAFT})
    fake.reply(tool_calls=[draft])
    fake.reply("Published the release announcement on #blog.")
    return {FAKE_URL_ENV: fake.url}, fake


# ---------------------------------------------------------------- the webhook receiver


@dataclass
class Delivery:
    """One request the receiver got, once its signature checked out."""

    kind: str
    event_id: int
    data: dict[str, Any]

    def summary(self) -> str:
        """The event kind, the request, and what was asked or decided."""
        data = self.data
        what = (
            data.get("title")
            if self.kind == "approval.requested"
            else f"{data.get('decision')} by {data.get('by')}"
        )
        return f"{self.kind:<19} {str(data.get('approval_id', ''))[:22]:<22} {what}"


@dataclass
class Receiver:
    """A webhook receiver on loopback that accepts only correctly signed requests."""

    secret: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    live: bool = False  # print each delivery as it arrives (once the script is done)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/kernos-hook"

    def start(self) -> Receiver:
        """Listen on a free loopback port, in a daemon thread."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        """Verify one request; return the HTTP status to answer."""
        try:
            verify_webhook(self.secret, headers, body)
        except errors.AuthenticationError as error:
            self.refused.append(str(error))
            return 401
        envelope = json.loads(body)
        delivery = Delivery(envelope["type"], envelope.get("event_id") or 0, envelope["data"])
        self.deliveries.append(delivery)
        if self.live:
            console.print(f"   \\[webhook] {delivery.summary()}  [green]signature verified[/green]")
        return 204


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(receiver.receive(dict(self.headers.items()), body))
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the demo prints what it received instead

    return Handler


# ---------------------------------------------------------------- the demo, over HTTP


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise SystemExit(f"the demo gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)
    return found


def pending_request(client: httpx.Client, run_id: str) -> dict[str, Any] | None:
    """The run's pending approval request, if any."""
    page = client.get("/approvals", params={"run_id": run_id, "status": "pending"})
    items: list[dict[str, Any]] = page.raise_for_status().json()["items"]
    return items[0] if items else None


def finished_run(client: httpx.Client, run_id: str) -> dict[str, Any] | None:
    """The run once it has ended."""
    run: dict[str, Any] = client.get(f"/runs/{run_id}").raise_for_status().json()
    return run if run["status"] in ("succeeded", "failed", "cancelled") else None


def run_status(client: httpx.Client, run_id: str) -> str:
    """The run's status."""
    status: str = client.get(f"/runs/{run_id}").raise_for_status().json()["status"]
    return status


def describe(entry: dict[str, Any]) -> str:
    """One line for a tool or approval entry of an agent's journal."""
    output = entry["output"] if isinstance(entry["output"], dict) else {}
    detail = entry["detail"] if isinstance(entry["detail"], dict) else {}
    if entry["kind"] == "approval":
        edited = " with edits" if output.get("edited") else ""
        return f"{output.get('decision')}{edited} by {output.get('by')}: {output.get('comment')!r}"
    if output.get("decision") == "needs_approval":
        return f"{entry['name']}: needs_approval ({detail.get('reason')})"
    return f"{entry['name']}: {output.get('decision')}, ran -> {escape(str(output.get('content')))}"


def start(client: httpx.Client, workflow: str, arguments: dict[str, Any]) -> str:
    """Start a run; return its id."""
    body = {"workflow": workflow, "input": arguments}
    run_id: str = client.post("/runs", json=body).raise_for_status().json()["run_id"]
    return run_id


def levels(request: dict[str, Any]) -> str:
    """Who may decide, for how long, level by level, and the default."""
    parts = []
    for assignees, timeout in zip(request["assignees"], request["timeouts"], strict=False):
        who = ", ".join(assignees) or "any operator"
        parts.append(f"{who} for {_duration(timeout)}")
    return ", then ".join(parts) + f", then {request['default']}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "ever"
    return f"{seconds / 3600:g} h" if seconds < 86400 else f"{seconds / 86400:g} day(s)"


def decide(
    client: httpx.Client, request: dict[str, Any], decision: str, **fields: Any
) -> httpx.Response:
    """Send a decision on a request (not raising: a refusal is part of the show)."""
    body = {"decision": decision, **fields}
    return client.post(f"/approvals/{request['approval_id']}/decision", json=body)


def add_operator(admin: httpx.Client) -> str:
    """Create the operator user over the API; sign in as her; return her bearer token."""
    admin.post(
        "/users", json={"username": OPERATOR, "password": OPERATOR_PASSWORD, "role": "operator"}
    ).raise_for_status()
    signed_in = admin.post(
        "/auth/login", json={"username": OPERATOR, "password": OPERATOR_PASSWORD, "token": True}
    ).raise_for_status()
    token: str = signed_in.json()["token"]
    return token


def show(url: str, admin_key: str) -> Receiver:
    """Drive approvals, a policy-gated tool call and a webhook over the API.

    Returns the webhook receiver (still listening, so later deliveries land).
    """
    api = url + "/api/v1"
    admin = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {admin_key}"})
    with admin:
        console.print("\n[bold]7. Notifications: a webhook to a receiver on loopback[/bold]")
        receiver = Receiver().start()
        created = admin.post("/webhooks", json={"url": receiver.url}).raise_for_status().json()
        receiver.secret = created["secret"]
        hook = created["webhook"]
        console.print(
            f"   POST /webhooks {receiver.url} -> {hook['webhook_id']}, events {hook['kinds']}, "
            f"secret {created['secret'][:10]}... (shown once; the receiver checks each signature)"
        )
        token = add_operator(admin)
        console.print(
            f"   POST /users {OPERATOR} (operator), then she signs in: POST /auth/login -> a token"
        )
        operator = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"})
        with operator:
            approval_gate(admin, operator)
            gated = gated_tool_call(admin, operator)
        # Four expense and tool-call requests, three decisions (a real model may not call).
        show_deliveries(admin, receiver, hook["webhook_id"], expected=7 if gated else 5)
    return receiver


def approval_gate(admin: httpx.Client, operator: httpx.Client) -> None:
    """An expense waits for a person: refused to its requester, approved, then one rejected."""
    console.print("\n[bold]8. An approval gate: the 'expense' workflow waits for a person[/bold]")
    run_id = start(admin, "expense", {"employee": "sam", "amount": 420, "purpose": "KubeCon trip"})
    request = wait_for("the approval request", lambda: pending_request(admin, run_id))
    wait_for("the run to let its worker go", lambda: run_status(admin, run_id) == "waiting")
    console.print(
        f"   POST /runs expense (admin key) -> run {run_id[:12]}..., now 'waiting' "
        "(suspended: no worker is held while it waits)"
    )
    console.print(
        f"   GET /approvals?status=pending -> {request['approval_id']}: {request['title']}"
    )
    console.print(f"     details {request['details']}")
    console.print(f"     who decides: {levels(request)}")
    refused = decide(admin, request, "approve", comment="looks fine to me")
    console.print(
        f"   approve with the key that started the run -> {refused.status_code}: "
        f"{refused.json()['detail']}"
    )
    decided = decide(operator, request, "approve", comment="within the travel budget")
    decision = decided.raise_for_status().json()["decision"]
    console.print(
        f"   approve as {OPERATOR} -> {decided.status_code}, "
        f"decided by {decision['by']}: {decision['comment']!r}"
    )
    run = wait_for("the expense run to finish", lambda: finished_run(admin, run_id))
    journal = admin.get(f"/runs/{run_id}/journal").raise_for_status().json()
    entry = next(e for e in journal if e["kind"] == "approval")
    console.print(f"   run {run['status']}: {run['output']}")
    console.print(
        f"   journal seq {entry['seq']} ({entry['kind']}): {entry['output']['decision']} "
        f"by {entry['output']['by']}, comment {entry['output']['comment']!r}"
    )

    second = start(
        admin, "expense", {"employee": "sam", "amount": 9000, "purpose": "an espresso machine"}
    )
    request = wait_for("the second request", lambda: pending_request(admin, second))
    decide(operator, request, "reject", comment="not in this year's budget").raise_for_status()
    run = wait_for("the second run to finish", lambda: finished_run(admin, second))
    console.print(
        f"   a second request, {request['title']!r} ({request['details']['purpose']}): "
        f"rejected by {OPERATOR}"
    )
    console.print(f"   run {run['status']}: {run['output']}")
    third = start(admin, "expense", {"employee": "kim", "amount": 75, "purpose": "team lunch"})
    request = wait_for("the third request", lambda: pending_request(admin, third))
    console.print(
        f"   a third request, {request['title']!r}, is left pending: decide it in the "
        f"dashboard's Approvals page as {OPERATOR} (see the end)"
    )


def gated_tool_call(admin: httpx.Client, operator: httpx.Client) -> bool:
    """The tenant's policy sends the publisher's tool call to a person, who edits it.

    Returns whether the model called the tool (a real model might not).
    """
    console.print("\n[bold]9. A policy: the agent's 'publish' calls need a person[/bold]")
    applied = admin.put(
        "/policy", content=POLICY, headers={"Content-Type": "application/yaml"}
    ).raise_for_status()
    policy = applied.json()
    console.print(
        f"   PUT /policy -> version {policy['version']} (sha256 {policy['sha256'][:12]}...): "
        "publish -> needs_approval by an operator (1 h, then an admin, then reject)"
    )
    run_id = start(admin, f"agent:{publisher.name}", {"task": TASK})
    console.print(f"   POST /runs agent:{publisher.name} '{TASK}' (model {publisher.model})")

    def gate_or_end() -> dict[str, Any] | None:
        return pending_request(admin, run_id) or finished_run(admin, run_id)

    request = wait_for("the tool call's approval request", gate_or_end, timeout=60)
    if "approval_id" not in request:
        console.print(f"   the model did not call publish (run {request['status']}): no approval")
        return False
    arguments = request["details"]["arguments"]
    console.print(
        f"   pending {request['kind']}: {request['details']['tool']}({json.dumps(arguments)})"
    )
    console.print(f"     bound to args_hash {request['args_hash'][:16]}...")
    edits = {**arguments, "text": EDITED}
    decided = decide(
        operator,
        request,
        "approve",
        edits=edits,
        args_hash=request["args_hash"],
        comment="toned down",
    )
    decided.raise_for_status()
    console.print(f"   approve as {OPERATOR} with edited arguments: text -> {EDITED!r}")
    run = wait_for("the agent run to finish", lambda: finished_run(admin, run_id), timeout=60)
    journal = admin.get(f"/runs/{run_id}/journal").raise_for_status().json()
    for entry in journal:
        if entry["kind"] in ("tool", "approval"):
            console.print(f"   journal seq {entry['seq']} {entry['kind']:<8} {describe(entry)}")
    answer = (run["output"] or {}).get("output")
    console.print(f"   run {run['status']}; the agent's answer: {escape(str(answer))}")
    return True


def show_deliveries(
    admin: httpx.Client, receiver: Receiver, webhook_id: str, expected: int
) -> None:
    """What the receiver got: each approval event, its signature verified."""
    console.print("\n[bold]10. What the webhook receiver got[/bold]")
    wait_for(f"{expected} webhook deliveries", lambda: len(receiver.deliveries) >= expected)
    for delivery in sorted(receiver.deliveries, key=lambda d: d.event_id):
        console.print(f"   {delivery.summary()}  [green]signature verified[/green]")
    page = admin.get(f"/webhooks/{webhook_id}/deliveries").raise_for_status().json()
    statuses = sorted({d["status"] for d in page["items"]})
    console.print(
        f"   GET /webhooks/{webhook_id}/deliveries: {len(page['items'])} deliveries, {statuses}; "
        f"refused by the receiver: {len(receiver.refused)}"
    )
