"""Which ``Host`` headers are served: base_url's host plus ``allowed_hosts``.

A request for any other host gets 400 before it reaches a view, so links built from the
request (redirects, ``next=``, absolute URLs in mail) can never point at an attacker's
name (Host header poisoning). With a loopback ``base_url`` (the default), 127.0.0.1 and
localhost are both served, since they are the same machine; the probes and the metrics
scrape (:data:`PROBES`) are answered for them whatever ``base_url``. Ports are not compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from werkzeug.sansio.utils import host_is_trusted
from werkzeug.wsgi import get_host

from helpdesk.config import Settings

LOOPBACK = ("127.0.0.1", "localhost")
#: Answered for a loopback host name too, whatever ``base_url`` says: the probes and the
#: scrape that systemd, a load balancer or Prometheus send to ``127.0.0.1:<port>`` of each
#: process. They build no link from the request (``/metrics`` still needs its token).
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def trusted_hosts(settings: Settings) -> list[str]:
    """Host names for Flask's ``TRUSTED_HOSTS`` (``.example.com`` matches subdomains)."""
    base = (urlsplit(settings.base_url).hostname or "").lower()
    hosts = [base] + [_without_port(h) for h in settings.allowed_hosts]
    if base in LOOPBACK:
        hosts += LOOPBACK
    return sorted({"." + h[2:] if h.startswith("*.") else h for h in hosts if h})


def _without_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0]


class HostCheck:
    """WSGI middleware: a request for an unknown host is answered 400 before the app sees
    it (no session, database or view runs). Installed inside ProxyFix, so behind trusted
    proxies the forwarded host is the one checked."""

    def __init__(self, app: Callable[..., Any], hosts: list[str]) -> None:
        self.app = app
        self.hosts = hosts

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = get_host(environ).lower()
        if not host_is_trusted(host, self.hosts) and not (
                environ.get("PATH_INFO") in PROBES and host_is_trusted(host, list(LOOPBACK))):
            body = b"Unknown host name: this server answers only for its configured address.\n"
            start_response("400 Bad Request", [
                ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")])
            return [body]
        return self.app(environ, start_response)
