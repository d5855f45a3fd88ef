"""Fetch a web page for a model, under a policy of hosts and addresses.

Before every request, the first and each redirect hop alike, the URL's host
is checked against the :class:`FetchPolicy`, resolved once, and every
address it resolves to is checked: private, loopback, link-local, multicast,
reserved and unspecified addresses (IPv4 and IPv6, including IPv4 embedded in
IPv6 as mapped, 6to4, Teredo or NAT64 addresses) are refused unless the policy
allows them. The request then goes to the checked address itself, with the
original host in the ``Host`` header and as the TLS server name (certificates
are verified against the host name), so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot redirect it.

Responses are read as they stream, up to ``max_bytes`` (after decompression),
within ``timeout`` seconds for the whole fetch, redirects included. HTML is
turned into text.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from kernos import errors
from kernos._netaddr import (
    IPAddress,
    IPNetwork,
    Resolver,
    is_public,
    system_resolve,
    within,
)
from kernos.tools._html import html_to_text
from kernos.tools._tool import Tool

__all__ = ["FetchPolicy", "FetchResult", "Fetcher", "Resolver"]


_TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/xhtml+xml",
    "application/javascript",
    "application/x-javascript",
    "application/ld+json",
    "application/rss+xml",
    "application/atom+xml",
    "application/x-yaml",
    "application/yaml",
    "application/toml",
}
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    """Where ``fetch`` may go, and how much it may take.

    Entries of ``allow`` and ``deny`` are host-name globs (``example.com``
    matches that host only, ``*.example.com`` its subdomains) or IP addresses
    and networks (``203.0.113.7``, ``10.0.0.0/8``, ``::1``), matched against
    the addresses the host resolves to.

    Args:
        allow: when not empty, only these hosts; a host passes if its name
            matches a glob, or all its addresses are in allowed networks.
        deny: never these hosts (deny wins over allow), by name or address.
        allow_private: allow private, loopback, link-local and other
            non-public addresses everywhere. Without it such an address is
            allowed only if it is in a network listed in ``allow``; a host
            name in ``allow`` does not allow the private addresses it
            resolves to.
        max_bytes: most bytes of a response body read (the rest is cut).
        timeout: seconds for the whole fetch, redirects included.
        max_redirects: most redirects followed.
        schemes: URL schemes allowed.

    Raises:
        ConfigError: an entry is neither a host glob nor an address, or a
            limit is not positive.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_private: bool = False
    max_bytes: int = 1_000_000
    timeout: float = 30.0
    max_redirects: int = 5
    schemes: tuple[str, ...] = ("http", "https")
    _allow: tuple[tuple[str, ...], tuple[IPNetwork, ...]] = field(init=False, repr=False)
    _deny: tuple[tuple[str, ...], tuple[IPNetwork, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("allow", "deny", "schemes"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if self.max_bytes <= 0 or self.timeout <= 0 or self.max_redirects < 0:
            raise errors.ConfigError("fetch limits must be positive")
        object.__setattr__(self, "_allow", _entries(self.allow))
        object.__setattr__(self, "_deny", _entries(self.deny))


def _entries(entries: Iterable[str]) -> tuple[tuple[str, ...], tuple[IPNetwork, ...]]:
    hosts: list[str] = []
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip().lower().rstrip(".").strip("[]")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        if not text or "/" in text or ":" in text:
            raise errors.ConfigError(f"fetch policy entry {entry!r} is not a host or network")
        hosts.append(text)
    return tuple(hosts), tuple(networks)


@dataclass(frozen=True, kw_only=True)
class FetchResult:
    """A fetched page.

    Attributes:
        url: the final URL, after redirects.
        status: the HTTP status.
        content_type: the media type, without parameters.
        text: the body as text (HTML turned into plain text).
        truncated: the body was longer than ``max_bytes`` and was cut.
        redirects: the URLs redirected to, in order.
    """

    url: str
    status: int
    content_type: str
    text: str
    truncated: bool = False
    redirects: tuple[str, ...] = ()

    def render(self) -> str:
        """The result as the text a model reads: a short header, then the body."""
        lines = [f"URL: {self.url}", f"Status: {self.status}"]
        if self.redirects:
            lines.append(f"Redirects: {len(self.redirects)}")
        lines.append(f"Content-Type: {self.content_type or 'unknown'}")
        if self.truncated:
            lines.append("Note: the body was cut at the size limit")
        return "\n".join(lines) + "\n\n" + self.text


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    address: IPAddress


class Fetcher:
    """Fetches pages under a :class:`FetchPolicy`.

    Args:
        policy: the policy (default: public hosts only, default limits).
        resolver: resolves host names (default: the system resolver); tests
            pass their own.
        links: keep link targets in the text of HTML pages.
        verify: TLS verification: True, False, or an ``ssl.SSLContext``.
        user_agent: the ``User-Agent`` header sent.
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        resolver: Resolver | None = None,
        links: bool = False,
        verify: Any = True,
        user_agent: str = "kernos-fetch/0.1",
    ) -> None:
        self.policy = policy or FetchPolicy()
        self.resolver: Resolver = resolver or system_resolve
        self.links = links
        self.verify = verify
        self.user_agent = user_agent

    def tool(self, name: str = "fetch") -> Tool[[str], Awaitable[str]]:
        """The ``fetch(url)`` tool for a model."""

        async def fetch(url: str) -> str:
            """Fetch a web page (http or https) and return its text; HTML is turned into text.

            Args:
                url: the absolute URL to fetch.
            """
            return (await self.fetch(url)).render()

        return Tool(fetch, name=name)

    async def fetch(self, url: str) -> FetchResult:
        """Fetch ``url``, following redirects that the policy allows.

        Raises:
            ToolError: the URL, a redirect or an address is refused, the
                fetch failed or took too long, or the body is not text.
        """
        try:
            async with asyncio.timeout(self.policy.timeout):
                return await self._fetch(url)
        except TimeoutError:
            raise errors.ToolError(
                f"fetching {url} took longer than {self.policy.timeout:g} seconds",
                reason="timeout",
            ) from None
        except httpx.InvalidURL as exc:
            raise errors.ToolError(f"invalid URL {url!r}: {exc}", reason="invalid") from None
        except httpx.HTTPError as exc:
            raise errors.ToolError(
                f"fetching {url} failed: {type(exc).__name__}: {exc}", reason="network"
            ) from None

    async def check(self, url: str) -> IPAddress:
        """Check a URL against the policy; return the address it would connect to.

        Raises:
            ToolError: the URL is refused.
        """
        return (await self._check(httpx.URL(url))).address

    async def _fetch(self, url: str) -> FetchResult:
        current = httpx.URL(url)
        redirects: list[str] = []
        async with httpx.AsyncClient(
            trust_env=False,  # a proxy from the environment would bypass the address pinning
            follow_redirects=False,
            timeout=self.policy.timeout,
            verify=self.verify,
            headers={"User-Agent": self.user_agent},
        ) as client:
            while True:
                target = await self._check(current)
                request = _pinned_request(client, current, target)
                response = await client.send(request, stream=True)
                try:
                    if not response.is_redirect:
                        return await self._read(current, response, tuple(redirects))
                    if len(redirects) >= self.policy.max_redirects:
                        raise errors.ToolError(
                            f"{url} redirected more than {self.policy.max_redirects} times",
                            reason="redirects",
                        )
                    current = current.join(response.headers["location"])
                    redirects.append(str(current))
                finally:
                    await response.aclose()

    async def _check(self, url: httpx.URL) -> _Target:
        policy = self.policy
        if url.scheme not in policy.schemes:
            raise _refused(f"the scheme of {url} is not allowed (only {', '.join(policy.schemes)})")
        host = url.raw_host.decode("ascii").lower().rstrip(".")
        if not host:
            raise _refused(f"{url} has no host")
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
        allow_hosts, allow_nets = policy._allow
        deny_hosts, deny_nets = policy._deny
        if any(fnmatch.fnmatchcase(host, glob) for glob in deny_hosts):
            raise _refused(f"{host} is denied by the fetch policy")
        addresses = await self._addresses(host, port)
        for address in addresses:
            if any(within(address, net) for net in deny_nets):
                raise _refused(f"{host} ({address}) is denied by the fetch policy")
        by_name = any(fnmatch.fnmatchcase(host, glob) for glob in allow_hosts)
        by_address = all(any(within(a, net) for net in allow_nets) for a in addresses)
        if (allow_hosts or allow_nets) and not (by_name or by_address):
            raise _refused(f"{host} is not in the fetch policy's allow list")
        for address in addresses:
            listed = any(within(address, net) for net in allow_nets)
            if not (policy.allow_private or listed or is_public(address)):
                raise _refused(
                    f"{host} resolves to {address}, a private or reserved address; refused"
                )
        return _Target(host, port, addresses[0])

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            found = await self.resolver(host, port)
        except OSError as exc:
            raise errors.ToolError(f"cannot resolve {host}: {exc}", reason="dns") from None
        addresses = [ipaddress.ip_address(text.split("%")[0]) for text in found]
        if not addresses:
            raise errors.ToolError(f"cannot resolve {host}", reason="dns")
        return addresses

    async def _read(
        self, url: httpx.URL, response: httpx.Response, redirects: tuple[str, ...]
    ) -> FetchResult:
        header = response.headers.get("content-type", "")
        mime = header.split(";")[0].strip().lower()
        if mime and not (mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith("+json")):
            raise errors.ToolError(f"{url} is {mime}, not text; not shown", reason="not_text")
        chunks: list[bytes] = []
        size, truncated = 0, False
        async for chunk in response.aiter_bytes():
            if size + len(chunk) > self.policy.max_bytes:
                chunks.append(chunk[: self.policy.max_bytes - size])
                truncated = True
                break
            chunks.append(chunk)
            size += len(chunk)
        body = b"".join(chunks)
        if not mime and b"\0" in body[:4096]:
            raise errors.ToolError(f"{url} is binary, not text; not shown", reason="not_text")
        text = _decode(body, response.charset_encoding)
        if mime in _HTML_TYPES:  # parsing a megabyte of HTML would hold up the event loop
            text = await asyncio.to_thread(html_to_text, text, links=self.links)
        return FetchResult(
            url=str(url),
            status=response.status_code,
            content_type=mime,
            text=text,
            truncated=truncated,
            redirects=redirects,
        )


def _pinned_request(client: httpx.AsyncClient, url: httpx.URL, target: _Target) -> httpx.Request:
    # Connect to the address that was checked, not to whatever the name
    # resolves to by the time the connection is made; the server still sees
    # the host name in Host and, over TLS, as the server name it must prove.
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = target.host
    return client.build_request(
        "GET",
        url.copy_with(host=str(target.address)),
        headers={"Host": url.netloc.decode("ascii")},
        extensions=extensions,
    )


def _refused(message: str) -> errors.ToolError:
    return errors.ToolError(message, reason="refused")


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")
