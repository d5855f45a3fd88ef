"""The fetch tool against local servers on loopback: policy, redirects, pinning, caps.

Nothing here leaves the machine: servers listen on 127.0.0.1 and 127.0.0.2,
and the refusal tests check URLs without connecting anywhere.
"""

from __future__ import annotations

import gzip
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from kernos import errors
from kernos.tools import Fetcher, FetchPolicy, html_to_text
from kernos.tools._fetch import _pinned_request, _Target

PAGE = b"""<!doctype html><html><head><title>Local page</title>
<style>body { color: red }</style><script>var secret = "hidden";</script></head>
<body><h1>Welcome</h1><p>Read <a href="/docs">the docs</a> today.</p></body></html>"""


@dataclass
class Server:
    host: str
    port: int
    paths: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def send(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            server.paths.append(self.path)
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            route = parts.path
            if route == "/page":
                self.send(200, PAGE, "text/html; charset=utf-8")
            elif route == "/text":
                self.send(200, "plain café".encode("latin-1"), "text/plain; charset=latin-1")
            elif route == "/host":
                self.send(200, self.headers["Host"].encode(), "text/plain")
            elif route == "/big":
                self.send(200, b"a" * 100_000, "text/plain")
            elif route == "/bomb":
                body = gzip.compress(b"z" * 5_000_000)
                self.send(200, body, "text/plain", Content_Encoding="gzip")
            elif route == "/binary":
                self.send(200, b"\x89PNG\r\n\x1a\n", "image/png")
            elif route == "/redirect":
                self.send(302, b"", "text/plain", Location=query["to"][0])
            elif route == "/loop":
                self.send(302, b"", "text/plain", Location="/loop")
            elif route == "/slow":
                server.release.wait(30)
                self.send(200, b"late", "text/plain")
            else:
                self.send(404, b"<p>not here</p>", "text/html")

    return Handler


def _serve(host: str) -> Iterator[Server]:
    httpd = ThreadingHTTPServer((host, 0), BaseHTTPRequestHandler)
    server = Server(host, httpd.server_address[1])
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def site() -> Iterator[Server]:
    """The allowed server, on 127.0.0.1."""
    yield from _serve("127.0.0.1")


@pytest.fixture
def other() -> Iterator[Server]:
    """A server on another loopback address, never allowed."""
    yield from _serve("127.0.0.2")


ALLOW_LOCAL = FetchPolicy(allow=["127.0.0.1"], timeout=10)


async def test_fetches_an_allowed_page_as_text(site: Server) -> None:
    result = await Fetcher(ALLOW_LOCAL).fetch(site.url("/page"))
    assert result.status == 200
    assert result.content_type == "text/html"
    assert result.text == "# Local page\n\n# Welcome\n\nRead the docs today."
    assert "hidden" not in result.text and "color" not in result.text
    linked = await Fetcher(ALLOW_LOCAL, links=True).fetch(site.url("/page"))
    assert "the docs (/docs)" in linked.text
    text = await Fetcher(ALLOW_LOCAL).fetch(site.url("/text"))
    assert text.text == "plain café"


async def test_loopback_is_refused_unless_allowed(site: Server) -> None:
    with pytest.raises(errors.ToolError, match="private or reserved address"):
        await Fetcher().fetch(site.url("/page"))
    with pytest.raises(errors.ToolError, match="private or reserved address"):
        # A host name in the allow list does not allow what it resolves to.
        await Fetcher(FetchPolicy(allow=["localhost"])).fetch(f"http://localhost:{site.port}/page")
    assert site.paths == []
    allowed = await Fetcher(FetchPolicy(allow_private=True)).fetch(site.url("/text"))
    assert allowed.status == 200


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://127.1/",
        "http://2130706433/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[ff02::1]/",
        "http://[2002:7f00:1::1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    ],
)
async def test_private_and_reserved_addresses_are_refused(url: str) -> None:
    with pytest.raises(errors.ToolError) as caught:
        await Fetcher().check(url)
    assert caught.value.facts["reason"] == "refused"


async def test_public_addresses_pass_and_names_are_resolved_once() -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return {
            "public.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
            "internal.test": ["10.1.2.3"],
            "mixed.test": ["93.184.216.34", "127.0.0.1"],
            "mapped.test": ["::ffff:93.184.216.34"],
        }[host]

    fetcher = Fetcher(FetchPolicy(allow=["*.test"]), resolver=resolver)
    assert await fetcher.check("https://public.test/x") == ipaddress.ip_address("93.184.216.34")
    mapped = ipaddress.ip_address("::ffff:93.184.216.34")
    assert await fetcher.check("https://mapped.test/x") == mapped
    for host in ["internal.test", "mixed.test"]:
        with pytest.raises(errors.ToolError, match="private or reserved"):
            await fetcher.check(f"https://{host}/")
    assert asked == ["public.test", "mapped.test", "internal.test", "mixed.test"]


async def test_allow_and_deny_lists() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    policy = FetchPolicy(
        allow=["docs.example", "*.wiki.example", "198.51.100.0/24"], deny=["bad.wiki.example"]
    )
    fetcher = Fetcher(policy, resolver=resolver)
    await fetcher.check("https://docs.example/")
    await fetcher.check("https://en.wiki.example/")
    await fetcher.check("https://198.51.100.7/")
    for url, message in [
        ("https://other.example/", "not in the fetch policy's allow list"),
        ("https://sub.docs.example/", "not in the fetch policy's allow list"),
        ("https://bad.wiki.example/", "denied"),
        ("ftp://docs.example/", "scheme"),
        ("file:///etc/passwd", "scheme"),
    ]:
        with pytest.raises(errors.ToolError, match=message):
            await fetcher.check(url)
    denied = Fetcher(FetchPolicy(allow_private=True, deny=["127.0.0.0/8"]))
    with pytest.raises(errors.ToolError, match="denied"):
        await denied.check("http://127.0.0.1/")
    with pytest.raises(errors.ConfigError):
        FetchPolicy(allow=["http://example.com/"])


async def test_redirects_are_rechecked(site: Server, other: Server) -> None:
    fetcher = Fetcher(ALLOW_LOCAL)
    followed = await fetcher.fetch(site.url(f"/redirect?to={site.url('/text')}"))
    assert followed.url == site.url("/text")
    assert followed.redirects == (site.url("/text"),)
    relative = await fetcher.fetch(site.url("/redirect?to=/page"))
    assert relative.url == site.url("/page")

    for target in [other.url("/secret"), "http://[::1]/secret", "http://169.254.169.254/"]:
        with pytest.raises(errors.ToolError, match="not in the fetch policy's allow list"):
            await fetcher.fetch(site.url(f"/redirect?to={target}"))

    # A hop to a host allowed by name that resolves to a loopback address.
    async def resolver(host: str, port: int) -> list[str]:
        return {"inner.test": ["127.0.0.2"]}[host]

    by_name = Fetcher(FetchPolicy(allow=["127.0.0.1", "*.test"]), resolver=resolver)
    hop = f"http://inner.test:{other.port}/secret"
    with pytest.raises(errors.ToolError, match=r"inner\.test resolves to 127\.0\.0\.2"):
        await by_name.fetch(site.url(f"/redirect?to={hop}"))
    assert other.paths == []  # the refused hop was never contacted

    with pytest.raises(errors.ToolError, match="redirected more than 5 times"):
        await fetcher.fetch(site.url("/loop"))
    assert site.paths.count("/loop") == 6


async def test_the_checked_address_is_the_one_connected_to(site: Server, other: Server) -> None:
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        # A name that answers an allowed address to the check and a forbidden
        # one afterwards; ".test" names have no DNS at all, so a connection
        # that resolved the name again would fail outright.
        asked.append(host)
        return next(answers)

    fetcher = Fetcher(FetchPolicy(allow=["127.0.0.1"]), resolver=rebinding)
    result = await fetcher.fetch(f"http://rebind.test:{site.port}/host")
    assert result.text == f"rebind.test:{site.port}"  # the Host header kept the name
    assert asked == ["rebind.test"]
    assert site.paths == ["/host"]
    assert other.paths == []


async def test_tls_requests_name_the_host_for_sni() -> None:
    url = httpx.URL("https://docs.example:8443/a?b=1")
    target = _Target("docs.example", 8443, ipaddress.ip_address("2001:db8::7"))
    async with httpx.AsyncClient() as client:
        request = _pinned_request(client, url, target)
    assert str(request.url) == "https://[2001:db8::7]:8443/a?b=1"
    assert request.headers["Host"] == "docs.example:8443"
    assert request.extensions["sni_hostname"] == "docs.example"


async def test_size_and_time_caps(site: Server) -> None:
    small = Fetcher(FetchPolicy(allow=["127.0.0.1"], max_bytes=1000))
    big = await small.fetch(site.url("/big"))
    assert big.truncated and big.text == "a" * 1000
    bomb = await small.fetch(site.url("/bomb"))
    assert bomb.truncated and bomb.text == "z" * 1000
    with pytest.raises(errors.ToolError, match=r"took longer than 0\.3 seconds"):
        await Fetcher(FetchPolicy(allow=["127.0.0.1"], timeout=0.3)).fetch(site.url("/slow"))


async def test_binary_bodies_are_not_shown(site: Server) -> None:
    with pytest.raises(errors.ToolError, match="image/png, not text"):
        await Fetcher(ALLOW_LOCAL).fetch(site.url("/binary"))


async def test_the_fetch_tool_reports_results_and_refusals(site: Server) -> None:
    fetch = Fetcher(ALLOW_LOCAL).tool()
    assert fetch.name == "fetch"
    assert list(fetch.parameters["properties"]) == ["url"]
    ok = await fetch.invoke({"url": site.url("/page")})
    assert not ok.is_error
    assert ok.content.startswith(f"URL: {site.url('/page')}\nStatus: 200\n")
    missing = await fetch.invoke({"url": site.url("/nowhere")})
    assert "Status: 404" in missing.content and "not here" in missing.content
    refused = await fetch.invoke({"url": "http://10.0.0.1/"})
    assert refused.is_error and "allow list" in refused.content
    invalid = await fetch.invoke({"url": "http://[::1"})
    assert invalid.is_error


def test_html_to_text() -> None:
    html = (
        "<p>one&nbsp;two</p><ul><li>a</li><li>b</li></ul>"
        "<pre>  keep\n    indent</pre><table><tr><td>x</td><td>y</td></tr></table>"
        "<noscript>no</noscript><template><p>t</p></template>end"
    )
    assert html_to_text(html) == "one\xa0two\n\n- a\n- b\n\nkeep\n    indent\n\nx y\nend"
