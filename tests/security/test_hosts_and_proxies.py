"""The Host header (#10 item 10) and client addresses behind a reverse proxy with
``helpdesk serve`` (#10 item 5).

The proxy test runs the real server (``helpdesk serve``, waitress) and a small reverse proxy,
each in its own process on loopback; clients connect from different loopback addresses
(127.0.0.2, 127.0.0.3), which the proxy reports in X-Forwarded-For as nginx does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from helpdesk.testing import PG_URL_VARIABLE

HELPDESK = [sys.executable, "-m", "helpdesk.cli"]


# -- Host header -------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [
    {"base_url": "https://help.example.com", "allowed_hosts": "help.internal, *.corp.example"}])
@pytest.mark.parametrize("host, status", [
    ("help.example.com", 200), ("help.example.com:443", 200), ("HELP.EXAMPLE.COM", 200),
    ("help.internal", 200), ("desk.corp.example", 200),
    ("evil.example", 400), ("help.example.com.evil.example", 400), ("help.example.com@evil.example", 400),
    ("localhost", 400), ("127.0.0.1", 400), ("", 400),
])
def test_only_the_configured_hosts_are_served(app: Flask, host: str, status: int) -> None:
    for method, path in [("GET", "/login"), ("POST", "/login"), ("GET", "/queues/open")]:
        response = app.test_client().open(path, method=method, headers={"Host": host},
                                           base_url="https://help.example.com")
        expected = status if status == 400 else {"/login": 200 if method == "GET" else 400,
                                                 "/queues/open": 302}[path]
        assert response.status_code == expected, (method, path)
        if status == 400:
            assert "evil" not in response.get_data(as_text=True)


@pytest.mark.parametrize("settings_overrides", [
    {"base_url": "https://help.example.com", "allowed_hosts": ""}])
@pytest.mark.parametrize("host", ["127.0.0.1:5000", "localhost:5001"])
def test_probes_and_the_scrape_on_the_process_port_are_answered(app: Flask, host: str) -> None:
    """The README's probes and its "scrape each web process on its own port": with a public
    base_url, `curl http://127.0.0.1:5000/healthz` and Prometheus got 400 Unknown host."""
    client = app.test_client()
    assert client.get("/healthz", headers={"Host": host}).status_code == 200
    assert client.get("/readyz", headers={"Host": host}).status_code == 200
    assert client.get("/metrics", headers={"Host": host}).status_code == 401  # past the host check: a token
    for path in ("/login", "/queues/open", "/healthz/x", "/api/v1/incidents"):  # pages still refused
        assert client.get(path, headers={"Host": host}).status_code == 400, path
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.parametrize("settings_overrides", [{"base_url": "https://help.example.com"}])
def test_a_forged_host_cannot_steer_the_login_redirect(app: Flask) -> None:
    response = app.test_client().get("/queues/open", headers={"Host": "evil.example"})
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize("settings_overrides", [{"allowed_hosts": ""}])  # not even the kit's
def test_loopback_base_url_serves_every_loopback_name(app: Flask) -> None:
    """The default base_url (http://127.0.0.1:5000): localhost is the same machine."""
    assert app.extensions["helpdesk"].settings.base_url == "http://127.0.0.1:5000"
    for host in ["127.0.0.1:5000", "localhost", "localhost:5000"]:
        assert app.test_client().get("/login", headers={"Host": host}).status_code == 200
    assert app.test_client().get("/login", headers={"Host": "example.com"}).status_code == 400


# -- trusted_proxies with helpdesk serve ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(process.stdout.read() if process.poll() is not None
                                     else "timeout") from None
            time.sleep(0.2)


@pytest.fixture
def served_behind_proxy(app: Flask, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`helpdesk serve` with trusted_proxies = 1 behind the test's reverse proxy; yields the
    proxy's base URL and the admin password. (`app` wiped the test database.)"""
    backend, front = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(tmp_path / "instance"), HELPDESK_PORT=str(backend),
               HELPDESK_TRUSTED_PROXIES="1", HELPDESK_BASE_URL=f"http://127.0.0.1:{front}")
    if os.environ.get(PG_URL_VARIABLE):
        env["HELPDESK_DATABASE_URL"] = os.environ[PG_URL_VARIABLE]
    init = subprocess.run(HELPDESK + ["init", "--no-demo"], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    password = init.stdout.split("password:")[1].split()[0]
    server = subprocess.Popen(HELPDESK + ["serve", "--no-worker"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("reverse_proxy.py")),
                              str(front), str(backend)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(backend, server)
        wait_for(front, proxy)
        yield f"http://127.0.0.1:{front}", password
    finally:
        for process in (proxy, server):
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)


def test_behind_the_proxy_each_client_has_its_own_address(
        served_behind_proxy: tuple[str, str], web_client: Any) -> None:
    """A stranger guessing the admin's password from 127.0.0.2 (and forging X-Forwarded-For
    to look like many clients) locks out only 127.0.0.2; the admin at 127.0.0.3 logs in."""
    base, password = served_behind_proxy

    def login_from(source: str, guess: str, forged: str | None = None) -> int:
        client = web_client(base, source=source,
                            address_header={"X-Forwarded-For": forged} if forged else None)
        assert client.get("/login")[0] == 200
        return client.post("/login", {"username": "admin", "password": guess})[0]

    answers = [login_from("127.0.0.2", "guess guess", forged=f"10.0.0.{n}") for n in range(7)]
    assert answers == [401] * 5 + [429] * 2, "forged X-Forwarded-For entries do not rotate the address"
    assert login_from("127.0.0.2", password) == 429
    assert login_from("127.0.0.3", password) == 302, "the real admin, elsewhere, is not locked out"


# -- the README's nginx block, run by nginx ------------------------------------------------------

NGINX = "/usr/sbin/nginx"
ROOT = Path(__file__).resolve().parents[2]


def readme_nginx_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("```nginx\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def served_behind_nginx(app: Flask, tmp_path: Path) -> Iterator[tuple[int, int, str]]:
    """`helpdesk serve` (trusted_proxies = 1, base_url https://help.example.com) behind nginx
    running the README's server blocks, with only ports and certificate paths changed; yields
    the HTTPS and HTTP ports and the admin password."""
    if not os.path.exists(NGINX):
        if os.environ.get("CI") == "true":
            raise AssertionError("CI=true but nginx is missing: apt-get install nginx-light")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    backend, https, plain = free_port(), free_port(), free_port()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=help.example.com", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True, timeout=60)
    block = (readme_nginx_block()
             .replace("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
             .replace("listen 80;", f"listen 127.0.0.1:{plain};")
             .replace("/etc/ssl/certs/help.example.com.pem", str(tmp_path / "cert.pem"))
             .replace("/etc/ssl/private/help.example.com.key", str(tmp_path / "key.pem"))
             .replace("http://127.0.0.1:5000", f"http://127.0.0.1:{backend}"))
    (tmp_path / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n access_log {tmp_path}/access.log;\n"
        + "".join(f" {kind}_temp_path {tmp_path}/{kind};\n"
                  for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + block + "}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(tmp_path / "instance"), HELPDESK_PORT=str(backend),
               HELPDESK_TRUSTED_PROXIES="1", HELPDESK_BASE_URL="https://help.example.com")
    if os.environ.get(PG_URL_VARIABLE):
        env["HELPDESK_DATABASE_URL"] = os.environ[PG_URL_VARIABLE]
    init = subprocess.run(HELPDESK + ["init", "--no-demo"], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    password = init.stdout.split("password:")[1].split()[0]
    server = subprocess.Popen(HELPDESK + ["serve", "--no-worker"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                              "-g", "daemon off;"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        wait_for(backend, server)
        wait_for(https, nginx)
        yield https, plain, password
    finally:
        for process in (nginx, server):
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)


def test_the_readme_nginx_config_serves_https_with_each_clients_address(
        served_behind_nginx: tuple[int, int, str], web_client: Any) -> None:
    https, plain, password = served_behind_nginx
    base = f"https://help.example.com:{https}"

    def client(source: str, forged: str | None = None) -> Any:
        return web_client(base, source=source, connect="127.0.0.1",
                          address_header={"X-Forwarded-For": forged} if forged else None)

    # Plain HTTP is sent to HTTPS.
    status, headers, _ = web_client(f"http://help.example.com:{plain}", connect="127.0.0.1").get("/login")
    assert status == 301 and headers["Location"].startswith("https://help.example.com")
    # The Host nginx passes on is the public name, which the app serves (any other is a 400).
    assert client("127.0.0.4").get("/queues/open")[0] == 302

    def login_from(source: str, guess: str, forged: str | None = None) -> int:
        browser = client(source, forged)
        assert browser.get("/login")[0] == 200
        # Over HTTPS the CSRF check also wants the page's own Referer, as browsers send it.
        return browser.post("/login", {"username": "admin", "password": guess},
                            headers={"Referer": f"{base}/login"})[0]

    answers = [login_from("127.0.0.2", "guess guess", forged=f"10.0.0.{n}") for n in range(6)]
    assert answers == [401] * 5 + [429], "nginx appends the real client; forged entries do not count"
    admin = client("127.0.0.3")
    assert admin.get("/login")[0] == 200
    status, headers, _ = admin.post("/login", {"username": "admin", "password": password},
                                    headers={"Referer": f"{base}/login"})
    assert status == 302, "the real admin, elsewhere, is not locked out"
    assert "secure" in headers.get("Set-Cookie", "").lower()  # an https base_url: cookies stay on TLS
    # An upload over max_request_bytes is nginx's 413 every time: had it reached the app,
    # which refuses before reading the body, nginx would often see a reset and answer 502.
    too_big = {"body": "x" * (13 * 1024 * 1024)}
    assert [admin.post("/login", too_big)[0] for _ in range(5)] == [413] * 5
