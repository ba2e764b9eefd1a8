"""The client's address, as far as it can be trusted.

Behind the reverse proxy of the production recipe, REMOTE_ADDR is the proxy's address and the
client's is in X-Forwarded-For, which each proxy extends with the address it saw. Only the
right-hand end of that header, written by proxies we know (setting TRUSTED_PROXIES), can be
believed: anything to the left of the first address that is not a trusted proxy is whatever the
client chose to send. So:

- REMOTE_ADDR is not a trusted proxy (or none is configured): the client is REMOTE_ADDR, and
  X-Forwarded-For is ignored (a client can write anything there);
- otherwise: the right-most address in X-Forwarded-For that is not itself a trusted proxy.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def _parse(value: str) -> Address | None:
    """An address from REMOTE_ADDR or one X-Forwarded-For hop ("1.2.3.4", "1.2.3.4:port",
    "2001:db8::1", "[2001:db8::1]:port"); IPv4-mapped IPv6 as IPv4. None if unreadable."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: Address, networks: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def client_ip(request) -> str:
    remote_raw = request.META.get("REMOTE_ADDR", "") or ""
    remote = _parse(remote_raw)
    networks = _networks(tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ()))
    if remote is None:
        return remote_raw
    if not networks or not _trusted(remote, networks):
        return str(remote)
    hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    client = remote
    for hop in reversed(hops):
        addr = _parse(hop)
        if addr is None:       # a trusted proxy wrote something unreadable: stop at the last good one
            break
        client = addr
        if not _trusted(addr, networks):
            break
    return str(client)


def client_network(request) -> str:
    """client_ip as a rate-limit identity: an IPv6 client usually holds a whole /64, so count that
    (as django-ratelimit's own "ip" key does); an IPv4 address as it is."""
    ip = client_ip(request)
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False).network_address) + "/64"
    return ip
