"""A real Kernos server with the dashboard on loopback, and a signed-in browser-like client.

Workflows here are registered under ``web_*`` names; the HTML is parsed with
the standard library's parser, not string-matched.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx

import kernos
from kernos import agents, llm
from kernos.agents._toolcalls import tool_args_hash
from kernos.api._server import ApiServer
from kernos.control import Principal, Service, ensure_first_admin
from kernos.records import Role
from kernos.testing import FakeOpenAI
from kernos.web import mount

INJECTION = '<script>alert("x")</script><img src=x onerror=alert(1)><b>bold</b>'
MODEL = "openai:gpt-4o-mini"
MODELS: dict[str, agents.Model] = {}
"""The streaming model of the site being served (``web_llm`` asks it), against its fake."""


@kernos.step
async def web_echo(text: str) -> str:
    """A step whose output is whatever it was given (untrusted text)."""
    return text


@kernos.workflow(name="web_echo")
async def echo(text: str = "hello") -> str:
    """Echo the text through a step."""
    return await web_echo(text)


@kernos.workflow(name="web_a_workflow_whose_long_name_must_not_widen_a_narrow_screen")
async def long_named() -> str:
    """A workflow whose name is longer than a phone is wide (in every workflow list)."""
    return "ok"


@kernos.workflow(name="web_wait")
async def wait(topic: str = "default") -> object:
    """Run a step, then wait for a message and return it."""
    await web_echo("waiting")
    return await kernos.recv(topic)


@kernos.workflow(name="web_llm")
async def ask(question: str = "Why is the sky blue?") -> str:
    """Ask the site's model a question (streamed) and return its answer."""
    request = llm.ChatRequest(messages=[llm.Message.user(question)])
    return (await MODELS["writer"].chat(request)).text


class Flaky(Exception):
    """What ``web_flaky``'s step fails with, caused by a ConnectionError."""


@kernos.step(retries=kernos.RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=0))
async def web_flaky_call(url: str) -> str:
    """A step that always fails, with a cause, after three attempts."""
    try:
        raise ConnectionError(f"connection to {url} refused")
    except ConnectionError as error:
        raise Flaky("the upstream service is down") from error


@kernos.workflow(name="web_flaky")
async def flaky(url: str = "http://upstream.invalid") -> str:
    """Fail after retrying one step."""
    return await web_flaky_call(url)


@kernos.tool
async def read_page(url: str) -> str:
    """Read a web page (this one carries script and markup: untrusted text).

    Args:
        url: the page's address.
    """
    return INJECTION


SEND_EMAIL = {"to": "ops@example.com", "subject": "Deploy v2", "body": "<b>ship</b> it"}


@kernos.workflow(name="web_gated")
async def gated(to: str = "ops@example.com") -> dict[str, object]:
    """Ask, as a policy-gated tool call would, to send an email; return what was decided."""
    arguments = {**SEND_EMAIL, "to": to}
    decision = await kernos.approval(
        "Send an email?",
        {"tool": "send_email", "arguments": arguments, "reason": "the policy gates email"},
        kind="tool_call",
        args_hash=tool_args_hash("send_email", arguments),
        options=["approve", "reject", "edit"],
    )
    sent = decision.value if decision.edited else arguments
    return {"decision": decision.decision, "sent": sent, "comment": decision.comment}


@dataclass
class Site:
    """A running server with the dashboard, and the admin's password."""

    url: str
    app: kernos.Kernos
    service: Service
    admin_password: str
    admin_key: str
    fake: FakeOpenAI

    async def user(self, username: str, role: Role) -> str:
        """Create a user with ``role`` in the default tenant; return the password."""
        password = f"pw-{username}-0123456789"
        await self.service.admin.create_user(Principal.system("default"), username, password, role)
        return password

    @asynccontextmanager
    async def signed_in(
        self, username: str = "admin", password: str | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A cookie-keeping client that signed in through the form."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0) as client:
            form = await client.get("/login")
            token = hidden(form.text, "csrf_token")
            response = await client.post(
                "/login",
                data={
                    "csrf_token": token,
                    "username": username,
                    "password": password or self.admin_password,
                    "next": "/runs",
                },
            )
            assert response.status_code == 303, response.text
            yield client


@asynccontextmanager
async def live_site(store_url: str) -> AsyncIterator[Site]:
    """Serve the API and the dashboard over ``store_url`` on a free loopback port."""
    app = kernos.Kernos(store_url, worker=True, poll_interval=0.05)
    await app.open()
    try:
        async with FakeOpenAI() as fake:

            def connect() -> llm.Provider:
                return llm.connect(MODEL, base_url=fake.url, api_key="test", retries=0)

            MODELS["writer"] = agents.Model(MODEL, provider=connect, stream=True)
            reader = agents.Agent("web_reader", MODEL, tools=[read_page], provider=connect)
            try:
                bootstrap = await ensure_first_admin(app.store)
                assert bootstrap is not None
                service = Service(app)
                server = ApiServer(service, host="127.0.0.1", port=0, grace=1.0, dashboard=mount)
                url = await server.start()
                try:
                    yield Site(url, app, service, bootstrap.password, bootstrap.api_key, fake)
                finally:
                    await server.stop()
            finally:
                await MODELS.pop("writer").aclose()
                await reader.aclose()
    finally:
        await app.close()


class Page(HTMLParser):
    """The parts of a page the tests look at: elements by tag with attributes, and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.texts))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        """Elements ``tag`` whose attributes include ``attrs`` (``_`` for ``-``)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k) == v for k, v in wanted.items())
        ]


def hidden(html: str, name: str) -> str:
    """The value of the hidden input ``name`` in ``html``."""
    inputs = Page(html).find("input", name=name)
    assert inputs, f"no input {name}"
    value = inputs[0].get("value")
    assert value
    return value
