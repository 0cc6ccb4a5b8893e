"""The web server of `helpdesk serve`: waitress, stopped gracefully.

On SIGTERM (or Ctrl-C) the server stops accepting connections at once, lets
the requests already in flight finish and their answers go out (for at most
``shutdown_seconds``), then exits, so a restart drops no request that had
been accepted. Under systemd socket activation (``helpdesk.socket``, see the
README) the listening socket outlives the process: connections that arrive
while the new process starts wait in the kernel's queue instead of being
refused.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from helpdesk.words import format_size

logger = logging.getLogger(__name__)
SD_LISTEN_FDS_START = 3


def inherited_sockets() -> list[socket.socket]:
    """Listening sockets handed over by systemd (socket activation), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for child processes
    return [socket.socket(fileno=SD_LISTEN_FDS_START + n) for n in range(count)]


def settle() -> None:
    """Once the app is built and before the first request: what start-up made (modules, the
    app, plugins, settings) lives as long as the process, so it is moved out of the cyclic
    garbage collector's sight. Otherwise each full collection walks all of it again (some
    84,000 objects: 23-39 ms, measured in-process on a queue page), and every request queued
    behind that pause waits too. Objects made later are collected as before."""
    gc.collect()
    gc.freeze()


class _TooLargeTask(ErrorTask):
    """Waitress refuses a body over ``max_request_bytes`` before the app sees it, in plain
    text; this answers in the app's own kind instead: problem details for the API (what
    its clients parse), a short page for a browser."""

    def execute(self) -> None:
        if not isinstance(self.request.error, RequestEntityTooLarge):
            return super().execute()
        limit = self.channel.server.adj.max_request_body_size
        if (self.request.path or "").startswith("/api/"):
            content_type = "application/problem+json"
            body = json.dumps({"type": "about:blank", "title": "Request too large", "status": 413,
                               "detail": f"The request body is over {limit} bytes."})
        else:
            content_type = "text/html; charset=utf-8"
            body = ("<!doctype html><meta charset=utf-8><title>Request too large</title>"
                    f"<p>The request is too large (over {format_size(limit)}). Nothing was saved.</p>"
                    "<p>Go back to the form and send fewer or smaller files; what you typed is "
                    "still there in most browsers.</p>")
        self.status = "413 Request Entity Too Large"
        self.response_headers.extend([("Content-Type", content_type), ("Cache-Control", "no-store")])
        self.set_close_on_finish()
        encoded = body.encode()
        self.content_length = len(encoded)
        self.write(encoded)
        return None


class _Channel(HTTPChannel):
    error_task_class = _TooLargeTask


def make_server(app: Any, **options: Any) -> Any:
    """A waitress server for ``app`` (options as waitress takes them) whose refusals of a too
    large request come in the app's own kind; used by `helpdesk serve` and the tests alike."""
    server = create_server(app, **options)
    listeners = getattr(server, "map", None) or server._map
    for listener in list(listeners.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = _Channel
    return server


def _busy(server: Any) -> bool:
    dispatcher = server.task_dispatcher
    channels = [c for c in list(server._map.values()) if isinstance(c, HTTPChannel)]
    return bool(dispatcher.active_count > 0 or dispatcher.queue
                or any(c.requests or c.total_outbufs_len for c in channels))


def _close_idle_connections(server: Any) -> None:
    for channel in list(server._map.values()):
        if isinstance(channel, HTTPChannel) and not channel.requests and not channel.total_outbufs_len:
            channel.will_close = True
            channel.handle_close()


class ListenError(RuntimeError):
    """The server could not take its address (said plainly by the command, not a traceback)."""


def _address(name: Any) -> str:
    """``host:port`` of a socket name (``[v6]:port`` for IPv6; a Unix socket's path as it is)."""
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(name)


def serve(app: Any, *, host: str, port: int, threads: int, max_request_bytes: int,
          shutdown_seconds: int, clear_untrusted_proxy_headers: bool = True,
          on_listen: Any = None) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then stop gracefully (bounded). ``on_listen(where)``
    is called once listening, with the address(es) served."""
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if stopping.is_set():  # a second signal: stop now
            raise KeyboardInterrupt
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    options: dict[str, Any] = {"threads": threads, "ident": "helpdesk",
                               "max_request_body_size": max_request_bytes,
                               "clear_untrusted_proxy_headers": clear_untrusted_proxy_headers}
    sockets = inherited_sockets()
    try:
        server = (make_server(app, sockets=sockets, **options) if sockets
                  else make_server(app, host=host, port=port, **options))
    except (OSError, ValueError) as error:  # in use, not ours to bind, not an address
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise ListenError(f"cannot listen on {host}:{port}: {error}") from None
    if on_listen is not None:  # told where it really listens (socket activation: systemd's socket)
        on_listen(", ".join(f"http://{_address(sock.getsockname())}" for sock in sockets) if sockets
                  else f"http://{_address((server.effective_host, server.effective_port))}")
    try:
        while not stopping.is_set():
            wasyncore.loop(timeout=0.5, map=server._map, count=1)
        # Stop accepting (the listening socket closes), finish what was accepted.
        wasyncore.dispatcher.close(server)
        deadline = time.monotonic() + shutdown_seconds
        while time.monotonic() < deadline:
            _close_idle_connections(server)  # a kept-alive connection takes no new request
            if not _busy(server):
                break
            wasyncore.loop(timeout=0.1, map=server._map, count=1)
        if _busy(server):
            logger.warning("stopping with requests still in flight after %ss", shutdown_seconds)
    except KeyboardInterrupt:
        logger.warning("stopping at once (second signal)")
    finally:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(server._map)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
