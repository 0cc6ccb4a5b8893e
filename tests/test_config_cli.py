"""Configuration loading and the `helpdesk` command, run as a user would run them."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpdesk.config import ConfigError, load_settings

HELPDESK = [sys.executable, "-m", "helpdesk.cli"]
PG_URL = os.environ.get("HELPDESK_TEST_DATABASE_URL")


def test_precedence_defaults_file_environment_overrides(tmp_path):
    (tmp_path / "secret_key").write_text("s" * 40)
    (tmp_path / "helpdesk.toml").write_text('time_zone = "Europe/London"\nport = 6000\npage_size = 40\n')
    env = {"HELPDESK_PORT": "7000"}
    settings = load_settings({"page_size": 10}, environ=env, instance_path=tmp_path)
    assert settings.service_desk_team == "Service Desk"  # default
    assert settings.time_zone == "Europe/London"  # instance file
    assert settings.port == 7000  # environment beats the file
    assert settings.page_size == 10  # explicit override beats everything
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'helpdesk.db'}"


def test_an_instance_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    # Notepad (and other Windows editors) save UTF-8 with a BOM: the file used to be refused
    # as "not valid TOML: Invalid statement (at line 1, column 1)", a line that looks right.
    (tmp_path / "secret_key").write_text("s" * 40)
    (tmp_path / "helpdesk.toml").write_bytes(b'\xef\xbb\xbftime_zone = "Europe/London"\r\n')
    assert load_settings(environ={}, instance_path=tmp_path).time_zone == "Europe/London"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HELPDESK_DATABASE_URL", "mysql://localhost/helpdesk"),
        ("HELPDESK_QUEUE_URL", "amqp://localhost"),
        ("HELPDESK_PORT", "eighty"),
        ("HELPDESK_PORT", "70000"),
        ("HELPDESK_TIME_ZONE", "Mars/Olympus"),
        ("HELPDESK_BASE_URL", "helpdesk.example.com"),
        ("HELPDESK_SECRET_KEY", "short"),
        ("HELPDESK_DATABSE_URL", "sqlite:///x.db"),
        ("HELPDESK_SUPPORT_ADDRESS", "support"),
        ("HELPDESK_BASE_URL", "https://example.com/helpdesk"),
    ],
)
def test_bad_value_names_the_variable(tmp_path, name, value):
    (tmp_path / "secret_key").write_text("s" * 40)
    with pytest.raises(ConfigError) as error:
        load_settings(environ={name: value}, instance_path=tmp_path)
    assert name in str(error.value)


@pytest.mark.parametrize(("name", "value", "hidden"), [
    ("HELPDESK_SECRET_KEY", "a-real-looking-but-short-key", "a-real-looking-but-short-key"),
    ("HELPDESK_DATABASE_URL", "mysql://helpdesk:hunter2secret@db/helpdesk", "hunter2secret"),
])
def test_a_refused_secret_is_not_repeated_in_the_error(tmp_path, name, value, hidden):
    (tmp_path / "secret_key").write_text("s" * 40)
    with pytest.raises(ConfigError) as error:
        load_settings(environ={name: value}, instance_path=tmp_path)
    assert name in str(error.value) and hidden not in str(error.value)


def test_bad_instance_file_names_the_file_and_key(tmp_path):
    (tmp_path / "secret_key").write_text("s" * 40)
    (tmp_path / "helpdesk.toml").write_text("threads = 0\n")
    with pytest.raises(ConfigError, match=r"helpdesk.toml: threads"):
        load_settings(environ={}, instance_path=tmp_path)


@pytest.mark.parametrize("line, said", [
    ("host = 5", "expected text"), ("base_url = 42", "expected text"), ("time_zone = 1", "expected text"),
    ("support_address = ['a@example.com']", "expected text"), ("port = 5000.7", "whole number"),
    ("page_size = true", "whole number"),
])
def test_a_value_of_the_wrong_type_in_the_instance_file_is_named(tmp_path, line, said):
    (tmp_path / "helpdesk.toml").write_text(f'secret_key = "{"k" * 40}"\n{line}\n')
    with pytest.raises(ConfigError, match=f"helpdesk.toml: {line.split()[0]}: invalid value .*{said}"):
        load_settings(environ={}, instance_path=tmp_path)


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc", "http://127.0.0.1:99999", "https://:8080"])
def test_a_base_url_with_a_bad_port_or_no_host_is_refused_at_start(tmp_path, url):
    # It passed, and `serve` then died with a traceback (and every link in mail was broken).
    (tmp_path / "helpdesk.toml").write_text(f'secret_key = "{"k" * 40}"\nbase_url = "{url}"\n')
    with pytest.raises(ConfigError, match="helpdesk.toml: base_url: invalid value"):
        load_settings(environ={}, instance_path=tmp_path)


def test_missing_secret_key_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="helpdesk init"):
        load_settings(environ={}, instance_path=tmp_path / "nothing")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(HELPDESK_INSTANCE=str(tmp_path / "instance"), **extra)
    if PG_URL:
        env["HELPDESK_DATABASE_URL"] = PG_URL
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HELPDESK + args, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_cli_bad_setting_stops_with_the_variable_name(tmp_path):
    result = _run(["init"], _env(tmp_path, HELPDESK_PORT="not-a-port"))
    assert result.returncode != 0
    assert "HELPDESK_PORT" in result.stderr


def test_init_without_demo_prints_a_one_time_admin_password(app, tmp_path):
    # `app` wiped the test database; init runs against it from another process.
    env = _env(tmp_path)
    first = _run(["init", "--no-demo"], env)
    assert first.returncode == 0, first.stderr
    assert "user name: admin" in first.stdout
    password = first.stdout.split("password:")[1].split()[0]
    again = _run(["init", "--no-demo"], env)
    assert again.returncode == 0, again.stderr
    assert password not in again.stdout  # shown once only


def test_init_closes_a_new_instance_folder_to_other_users(app, tmp_path):
    # Under the usual umask 022 the folder was drwxr-xr-x and SQLite's helpdesk.db
    # -rw-r--r--: any local user could copy the password hashes, the SMTP password saved
    # in the browser and every customer's mail and files.
    old = os.umask(0o022)
    try:
        result = _run(["init", "--no-demo"], _env(tmp_path))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "instance").stat().st_mode & 0o777 == 0o750
    # A folder the admin made keeps its modes (a group shared with the MTA's pipe user).
    made = tmp_path / "made"
    made.mkdir(mode=0o775)
    made.chmod(0o775)
    assert _run(["--instance", str(made), "init", "--no-demo"], _env(tmp_path)).returncode == 0
    assert made.stat().st_mode & 0o777 == 0o775


def test_help_with_instance_lists_the_commands_its_plugins_add(app, tmp_path):
    # `helpdesk --instance /var/lib/helpdesk --help` read --help first and listed no
    # plugin command (`activity`), though `helpdesk --instance … activity` worked.
    env = _env(tmp_path)
    env["HELPDESK_INSTANCE"] = str(tmp_path / "desk")  # not ./instance, which --help would find
    assert _run(["init", "--no-demo"], env).returncode == 0
    env.pop("HELPDESK_INSTANCE")
    listed = subprocess.run(HELPDESK + ["--instance", str(tmp_path / "desk"), "--help"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^  activity\s", listed.stdout, re.M), listed.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_runs_web_and_worker_in_one_process_and_stops_cleanly(app, tmp_path):
    env = _env(tmp_path, HELPDESK_PORT=str(_free_port()))
    assert _run(["init", "--no-demo"], env).returncode == 0
    server = subprocess.Popen(HELPDESK + ["serve"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{env['HELPDESK_PORT']}/healthz"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        with urllib.request.urlopen(url.replace("/healthz", "/login"), timeout=5) as response:
            assert b"Log in" in response.read()
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "with background worker" in output


def test_serve_warns_when_links_would_point_to_another_port(app, tmp_path):
    # The first hour: `init`, then `serve --port 8631` with no base_url set. Every link in mail
    # (sign-in links too) would name the default port 5000, where nothing answers.
    env = _env(tmp_path)
    assert _run(["init", "--no-demo"], env).returncode == 0
    port = _free_port()
    server = subprocess.Popen(HELPDESK + ["serve", "--no-worker", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert (f"base_url is http://127.0.0.1:5000, but this server listens on port {port}"
            in output), output
    assert "HELPDESK_BASE_URL" in output


def test_no_port_warning_when_base_url_matches_or_is_public():
    from helpdesk.cli import base_url_mismatch

    assert base_url_mismatch("http://127.0.0.1:8631", 8631) is None
    assert base_url_mismatch("http://localhost:5000/", 5000) is None
    assert base_url_mismatch("https://help.example.com", 5000) is None  # a proxy in front
    assert "port 80" in base_url_mismatch("http://localhost", 5000)


def test_user_add_names_the_teams_before_asking_for_a_password(app, tmp_path):
    env = _env(tmp_path)
    assert _run(["init", "--no-demo"], env).returncode == 0
    # No password on stdin: had it been asked for first, the command would stop at the prompt.
    unknown = _run(["user", "add", "ana", "--name", "Ana", "--team", "Network"], env)
    assert unknown.returncode == 1, unknown.stderr
    assert "there is no team named 'Network' (teams: 'Service Desk')" in unknown.stderr
    assert "Admin → Teams" in unknown.stderr and "Password" not in unknown.stderr + unknown.stdout
    taken = _run(["user", "add", "admin", "--name", "Another Admin"], env)
    assert taken.returncode == 1 and "the user name 'admin' is already taken" in taken.stderr
    taken = _run(["user", "add", "Admin", "--name", "Another Admin"], env)  # names are kept lower-case
    assert taken.returncode == 1 and "the user name 'Admin' is already taken" in taken.stderr
    assert "Password" not in taken.stderr + taken.stdout


def test_serve_says_plainly_when_it_cannot_listen(app, tmp_path):
    env = _env(tmp_path)
    assert _run(["init", "--no-demo"], env).returncode == 0
    out_of_range = _run(["serve", "--no-worker", "--port", "70000"], env)  # 70000 would wrap to 4464
    assert out_of_range.returncode == 2 and "70000 is not in the range 1<=x<=65535" in out_of_range.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = _run(["serve", "--no-worker", "--port", str(port)], env)
    assert in_use.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in in_use.stderr
    assert "Traceback" not in in_use.stderr
    bad_host = _run(["serve", "--no-worker", "--host", "999.1.1.1"], env)
    assert bad_host.returncode == 1 and "cannot listen on 999.1.1.1" in bad_host.stderr


def test_second_init_tells_again_how_to_log_in_to_the_demo(app, tmp_path):
    env = _env(tmp_path)
    first = _run(["init", "--demo"], env)
    assert first.returncode == 0, first.stderr
    again = _run(["init", "--demo"], env)
    assert again.returncode == 0, again.stderr
    assert "helpdesk-demo" in again.stdout
    assert "Creating demo incidents" not in again.stdout


def test_demo_after_init_keeps_the_first_admin_and_loads_the_demo(app, tmp_path):
    # `init` without demo data made `admin`; `helpdesk demo` used to stop on that name
    # with a traceback ("The user name 'admin' is already taken") and load nothing.
    env = _env(tmp_path)
    first = _run(["init", "--no-demo"], env)
    assert first.returncode == 0, first.stderr
    password = first.stdout.split("password:")[1].split()[0]
    demo = _run(["demo"], env)
    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stderr
    assert "admin existed already and keeps the password it had" in demo.stdout
    assert "Demo data is loaded" in demo.stdout
    if PG_URL:  # the processes and this test share the database
        from helpdesk.models import Agent, Incident
        incidents = Incident.select().count()
        hashed = Agent.get(Agent.username == "admin").password_hash
    else:
        with sqlite3.connect(tmp_path / "instance" / "helpdesk.db") as db:
            incidents = db.execute("SELECT COUNT(*) FROM incident").fetchone()[0]
            hashed = db.execute("SELECT password_hash FROM agent WHERE username = 'admin'").fetchone()[0]
    assert incidents >= 190
    from argon2 import PasswordHasher
    assert PasswordHasher().verify(hashed, password)  # the first admin's password still works


def test_a_bad_plugin_value_in_the_instance_file_is_said_to_be_there(app, tmp_path):
    # The e-mail channel names its settings by variable; an admin who wrote the value in
    # helpdesk.toml used to be told only "HELPDESK_PLUGINS__EMAIL__SECURITY: …", a variable
    # they never set, and went looking for it in the environment.
    env = _env(tmp_path)
    assert _run(["init", "--no-demo"], env).returncode == 0
    config = tmp_path / "instance" / "helpdesk.toml"
    config.write_text('[plugins.email]\nhost = "smtp.example.com"\nsecurity = "ssl"\n')
    result = _run(["sla", "check", "--dry-run"], env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "expected none, starttls or tls" in result.stderr
    assert f"set as security in [plugins.email] of {config}" in result.stderr
    # Set in the environment, the variable's name says it all.
    config.write_text("")
    result = _run(["sla", "check", "--dry-run"], {**env, "HELPDESK_PLUGINS__EMAIL__HOST": "smtp.example.com",
                                                  "HELPDESK_PLUGINS__EMAIL__SECURITY": "ssl"})
    assert result.returncode != 0
    assert "HELPDESK_PLUGINS__EMAIL__SECURITY: expected none, starttls or tls" in result.stderr
    assert "set as" not in result.stderr


@pytest.mark.parametrize("command", [["init"], ["db", "upgrade"], ["sla", "check", "--dry-run"]])
def test_an_unreachable_database_is_said_plainly_without_its_password(tmp_path, command):
    # `init` and `db upgrade` used to end in a psycopg traceback, and the other commands
    # printed the database URL with its password ("cannot open the database
    # postgresql://helpdesk:<password>@…") into the terminal and the journal.
    env = _env(tmp_path, HELPDESK_SECRET_KEY="k" * 40)
    env["HELPDESK_DATABASE_URL"] = "postgresql://helpdesk:Sup3r-s3cret@127.0.0.1:1/helpdesk"  # not the test's
    (tmp_path / "instance").mkdir()
    result = _run(command, env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Error: cannot open the database postgresql://helpdesk:***@127.0.0.1:1/helpdesk" in result.stderr
    assert "Sup3r-s3cret" not in result.stdout + result.stderr


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.2)


def _log_incident_over_http(base: str, password: str, title: str) -> None:
    import http.cookiejar
    import re
    from urllib.parse import urlencode

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"{base}/login", timeout=5).read().decode()
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    page = opener.open(f"{base}/login", urlencode({"csrf_token": token, "username": "admin",
                                                    "password": password}).encode(), timeout=5).read()
    # logging in starts a new session, with a new CSRF token (on the page it lands on)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.decode()).group(1)
    opener.open(f"{base}/incidents/new", urlencode({"csrf_token": token, "title": title,
                                                    "type": "incident", "impact": "medium",
                                                    "urgency": "medium"}).encode(), timeout=5)


def _redis_url() -> str:
    """A scratch Redis database on loopback; its queue is emptied first."""
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_timeout=2).flushdb()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("no Redis server on 127.0.0.1:6379")
    return url


@pytest.mark.parametrize(("separate_worker", "queue"), [(False, "sqlite"), (True, "sqlite"), (True, "redis")],
                         ids=["in-process worker", "helpdesk worker", "helpdesk worker on redis"])
def test_events_are_processed_by_a_real_worker_from_the_queue(app, tmp_path, separate_worker, queue):
    env = _env(tmp_path, HELPDESK_PORT=str(_free_port()))
    if queue == "redis":
        env["HELPDESK_QUEUE_URL"] = _redis_url()
    init = _run(["init", "--no-demo"], env)
    password = init.stdout.split("password:")[1].split()[0]
    processes = [subprocess.Popen(HELPDESK + ["serve"] + (["--no-worker"] if separate_worker else []),
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    if separate_worker:
        processes.append(subprocess.Popen(HELPDESK + ["worker"], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    log = tmp_path / "instance" / "activity.jsonl"  # written by the bundled activity_log plugin
    try:
        base = f"http://127.0.0.1:{env['HELPDESK_PORT']}"
        _wait_for(f"{base}/healthz", processes[0])
        _log_incident_over_http(base, password, "Queued through SQLite")
        deadline = time.monotonic() + 20
        while not (log.exists() and "Queued through SQLite" in log.read_text()):
            assert time.monotonic() < deadline, "the worker never ran the event"
            time.sleep(0.2)
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs


@pytest.mark.parametrize("command", [["worker"], ["sla", "check"], ["user", "add", "ana", "--name", "Ana"],
                                     ["search", "rebuild"], ["escalation", "export", "standard"]])
def test_a_command_on_an_instance_with_no_database_says_to_run_init_and_creates_nothing(tmp_path, command):
    env = _env(tmp_path)
    env.pop("HELPDESK_DATABASE_URL", None)  # the default: SQLite in the instance folder
    instance = Path(env["HELPDESK_INSTANCE"])
    instance.mkdir()
    (instance / "secret_key").write_text("s" * 40)  # a secret key, no database yet
    answer = _run(command, env)
    assert answer.returncode == 1 and "run `helpdesk init` first" in answer.stderr, answer.stderr
    assert "Traceback" not in answer.stderr
    assert not list(instance.glob("*.db")), "no empty database file left behind"


def test_odd_arguments_are_refused_in_one_line(app, tmp_path):
    env = _env(tmp_path)
    assert _run(["init", "--no-demo"], env).returncode == 0
    for args, said in [
        (["sla", "check", "--at", "9999-12-31T23:59"], "choose a time from 1970 to 9000"),
        (["sla", "check", "--at", "0001-01-01T00:00+01:00"], "is not an ISO 8601 time"),
        (["sla", "check", "--at", "8999-01-01T00:00"], "add --dry-run"),  # would fire early
        (["sla", "audit", "INC-99999999999999999999"], "is not an incident reference"),
        (["sla", "audit", "INC-999999"], "no such incident: INC-999999"),
        (["channels", "test", "inapp", "admin"], "its recipient is an agent's id"),
    ]:
        answer = _run(args, env)
        assert answer.returncode != 0 and said in answer.stdout + answer.stderr, (args, answer.stderr)
        assert "Traceback" not in answer.stderr, args


def _forward(listener: socket.socket, upstream: tuple[str, int]) -> None:
    """A TCP forwarder to ``upstream`` (the database comes up when it starts accepting)."""
    import threading

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        server = socket.create_connection(upstream)
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


@pytest.mark.parametrize("command", [["worker"], ["serve", "--no-worker"]])
def test_a_process_started_before_its_database_waits_for_it(app, tmp_path, command):
    # At boot or during a fail-over the database may come up after the desk's processes: they
    # wait for it (a line every few seconds) instead of exiting for systemd to give up on them.
    import threading
    from urllib.parse import urlsplit

    env = _env(tmp_path, HELPDESK_PORT=str(_free_port()))
    assert _run(["init", "--no-demo"], env).returncode == 0
    port = _free_port()
    target = urlsplit(PG_URL) if PG_URL else None
    through = f"{target.username or 'postgres'}@127.0.0.1:{port}" if target else ""
    env["HELPDESK_DATABASE_URL"] = (PG_URL.replace(target.netloc, through) if target
                                    else f"postgresql://postgres@127.0.0.1:{port}/helpdesk")
    process = subprocess.Popen(HELPDESK + command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    listener = None
    try:
        deadline = time.monotonic() + 30
        while not any("waiting for the database" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.2)
        time.sleep(1)
        assert process.poll() is None, lines  # still there, waiting
        if target is None:
            return  # (the database coming up needs PostgreSQL)
        listener = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=_forward, args=(listener, (target.hostname, target.port or 5432)),
                         daemon=True).start()
        started = "Helpdesk worker running" if command == ["worker"] else "Helpdesk serving on"
        deadline = time.monotonic() + 30
        while not any(started in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        reader.join(timeout=10)
        process.stdout.close()
        if listener is not None:
            listener.close()


def test_a_worker_whose_queue_is_away_logs_each_kind_of_failure_once_a_minute(app, tmp_path):
    # With Redis away every worker thread fails on every poll; a traceback each time filled
    # ~700 MB of log a day. One record a minute per kind is kept (with a count of the rest).
    env = _env(tmp_path, HELPDESK_QUEUE_URL=f"redis://127.0.0.1:{_free_port()}/0", HELPDESK_WORKERS="8")
    assert _run(["init", "--no-demo"], env).returncode == 0
    worker = subprocess.Popen(HELPDESK + ["worker"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    time.sleep(8)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    said = "ERROR huey.consumer.Worker: Error reading from queue"
    reading = [line for line in output.splitlines() if said in line]
    assert len(reading) == 1, output  # 8 threads, polling for 8 s: said once


def test_every_security_event_is_logged_each_one_whatever_the_folding():
    # Failed logins and refused pages share one message form; folding them into one line a
    # minute would hide a password spray. Other repeated warnings are still folded.
    import io
    import logging

    from helpdesk.cli import RepeatFilter
    from helpdesk.security import log_refusal

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for user in ("lena", "kofi", "root"):
            log_refusal("login failed", user=user, address="127.0.0.1")
        for _ in range(3):
            logging.getLogger("helpdesk.outbox").warning("queue away: %s", "redis")
    finally:
        root.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert [line for line in lines if "login failed" in line] == [
        f"login failed user={user} address=127.0.0.1" for user in ("lena", "kofi", "root")]
    assert len([line for line in lines if "queue away" in line]) == 1


@pytest.mark.parametrize(("given", "read"), [("none", "none"), (" None ", "none"), ("gold", "gold")])
def test_default_sla_policy_takes_a_policy_name_or_none(tmp_path, given, read):
    (tmp_path / "secret_key").write_text("s" * 40)
    assert load_settings(environ={}, instance_path=tmp_path).default_sla_policy == "priority"
    settings = load_settings(environ={"HELPDESK_DEFAULT_SLA_POLICY": given}, instance_path=tmp_path)
    assert settings.default_sla_policy == read


@pytest.mark.parametrize(("line", "said"), [
    ('default_sla_policy = ""', 'write "none" for no SLA by default'),
    ("default_sla_policy = false", "expected text"),
    ('default_sla_policy = "gold\\ttier"', 'or "none"'),
])
def test_a_bad_default_sla_policy_stops_start_up_saying_how_to_write_it(tmp_path, line, said):
    """An empty value is not taken for "none": switching the SLA off is said in words."""
    (tmp_path / "helpdesk.toml").write_text(f'secret_key = "{"k" * 40}"\n{line}\n')
    with pytest.raises(ConfigError, match="helpdesk.toml: default_sla_policy: invalid value") as error:
        load_settings(environ={}, instance_path=tmp_path)
    assert said in str(error.value)
