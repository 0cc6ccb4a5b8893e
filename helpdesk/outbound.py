"""Outbound HTTP for channels: POSTs that cannot be turned against the network inside.

Public as ``helpdesk.post`` (plugins use it instead of urllib or requests).

The host is resolved once; every address must be public unless an admin
allow-listed the host or a network containing the address, and the
connection goes to the address that was checked (no DNS rebinding between
check and connect). Redirects are never followed; timeouts are always set.
"""

from __future__ import annotations

import http.client
import ipaddress
import json as _json
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from helpdesk.records import DeliveryError

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A unicast address on the internet. An IPv6 address that carries an IPv4 one (mapped,
    6to4, NAT64) is judged by that one: ``64:ff9b::7f00:1`` is 127.0.0.1 behind a translator."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _public(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            return _public(ip.sixtofour)
        if any(ip in network for network in _NAT64):
            return _public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.teredo is not None:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _allowed(host: str, address: str, allow: Iterable[str]) -> bool:
    ip = ipaddress.ip_address(address)
    for entry in allow:
        entry = entry.strip()
        if not entry:
            continue
        if entry.lower() == host.lower():
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return _public(ip)


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names by itself, in any form a resolver accepts (``0x7f000001``,
    ``2130706433`` and ``127.1`` are all 127.0.0.1)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def url_problem(url: str, allow_private: Iterable[str] = ()) -> str | None:
    """Why :func:`post` would refuse ``url``, as far as the URL itself tells (no DNS lookup:
    for checking settings when they are saved; a name that resolves to a private address is
    refused when sending). ``None``: nothing wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.username or parts.password:
        return f"{url!r}: URLs with credentials are not allowed"
    host = parts.hostname.lower().rstrip(".")
    literal = _literal(host)
    allow = list(allow_private)
    if literal is not None and not _allowed(host, str(literal), allow):
        return f"{url!r} is a private, loopback or link-local address; an admin must allow-list it"
    if literal is None and (host == "localhost" or host.endswith(".localhost")) and not any(
            entry.strip().lower() == host for entry in allow):
        return f"{url!r} names this machine; an admin must allow-list it"
    return None


def resolve(url: str, allow: Iterable[str] = ()) -> tuple[str, str, int, str]:
    """Check a URL and pick the address to connect to: (scheme, host, port, address)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise DeliveryError(f"{url!r} is not an http(s) URL", permanent=True)
    if parts.username or parts.password:
        raise DeliveryError("URLs with credentials are not allowed", permanent=True)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise DeliveryError(f"cannot resolve {parts.hostname}: {error.strerror}") from None
    addresses = sorted({info[4][0] for info in infos})
    allow = list(allow)
    refused = [a for a in addresses if not _allowed(parts.hostname, a, allow)]
    if refused:
        raise DeliveryError(
            f"{parts.hostname} resolves to a private, loopback or link-local address ({refused[0]}); "
            "an admin must allow-list it", permanent=True)
    return parts.scheme, parts.hostname, port, addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    expired.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def post(url: str, body: bytes | str | None = None, *, json: Any = None,
         headers: Mapping[str, str] | None = None, timeout: float = 10.0,
         allow_private: Iterable[str] = ()) -> int:
    """POST to ``url``; return the status, or raise :class:`DeliveryError`.

    Send ``json=`` (any JSON-serialisable value; ``application/json``), or
    ``body=`` as ``str`` (``text/plain; charset=utf-8``) or ``bytes``
    (``application/octet-stream``); a ``Content-Type`` in ``headers`` wins.
    ``timeout`` bounds the whole exchange, not just each read.
    ``allow_private`` lists host names or networks (``"10.0.0.0/8"``) that may
    be reached although private, loopback or link-local — by convention a
    plugin passes its own ``allow_private`` setting, so an admin decides.
    Only http(s); the address checked is the address connected to; redirects
    are not followed. 2xx is success; 3xx and 4xx are permanent failures
    (except 408 and 429); 5xx, timeouts and connection errors are temporary.
    """
    if json is not None:
        payload, content_type = _json.dumps(json).encode(), "application/json"
    elif isinstance(body, str):
        payload, content_type = body.encode(), "text/plain; charset=utf-8"
    else:
        payload, content_type = body or b"", "application/octet-stream"
    given = {key.lower() for key in (headers or {})}
    extra = {} if "content-type" in given else {"Content-Type": content_type}
    return _post(url, payload, {**extra, **(headers or {})}, timeout, allow_private)


def post_json(url: str, payload: Any, *, headers: Mapping[str, str] | None = None,
              timeout: float = 10.0, allow: Iterable[str] = ()) -> int:
    """POST ``payload`` as JSON (bytes are sent as they are, as JSON); see :func:`post`."""
    body = payload if isinstance(payload, bytes) else _json.dumps(payload).encode()
    return _post(url, body, {"Content-Type": "application/json", **(headers or {})}, timeout, allow)


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
          allow: Iterable[str]) -> int:
    scheme, host, port, address = resolve(url, allow)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    connection = connection_class(host, port, address, timeout)
    # The socket timeout bounds each read; this bounds the whole exchange, so a receiver that
    # drips bytes cannot hold a worker: when it expires the socket is shut down under the read.
    expired = threading.Event()
    watchdog = threading.Timer(timeout, _cut, (connection, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", path, body=body, headers={"User-Agent": "helpdesk", **headers})
        response = connection.getresponse()
        response.read(65536)
        status = response.status
    except TimeoutError:
        raise DeliveryError(f"{host} did not answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set():
            raise DeliveryError(f"{host} did not answer within {timeout:g} s") from None
        raise DeliveryError(f"{host}: {type(error).__name__}: {error}") from None
    finally:
        watchdog.cancel()
        connection.close()
    if expired.is_set():
        raise DeliveryError(f"{host} did not answer within {timeout:g} s")
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise DeliveryError(f"{host} answered {status} (a redirect, which is not followed)",
                            permanent=True)
    permanent = 400 <= status < 500 and status not in {408, 429}
    raise DeliveryError(f"{host} answered {status}", permanent=permanent)
