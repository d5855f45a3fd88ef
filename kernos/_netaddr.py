"""Which network addresses are public, and the system resolver: shared by the fetch
tool and webhook delivery, which both refuse to reach private networks by default.

A core module (standard library only), so any layer may use it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

__all__ = ["IPAddress", "IPNetwork", "Resolver", "is_public", "system_resolve", "within"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolve a host name and port to IP addresses (text), best first."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address.

    Private, loopback, link-local, multicast, reserved and unspecified
    addresses are not, nor IPv6 addresses that embed such an IPv4 address
    (mapped, 6to4, Teredo, NAT64).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo:
            embedded.extend(address.teredo)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(inner is not None and not is_public(inner) for inner in embedded):
            return False
        if address.ipv4_mapped is not None:
            return True
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not address.is_loopback
        and not address.is_link_local
        and not address.is_private
    )


def within(address: IPAddress, network: IPNetwork) -> bool:
    """Whether ``address`` (an IPv4-mapped IPv6 address as its IPv4 one) is in ``network``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version == network.version and address in network


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses (text) the system resolver gives for ``host``, best first, no repeats.

    Raises:
        OSError: the name does not resolve.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: dict[str, None] = {}
    for *_, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)
