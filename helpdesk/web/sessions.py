"""The web side of server-side sessions (:mod:`helpdesk.sessions`): the cookie's token.

Logging in clears whatever the browser brought (a session cookie planted by someone else,
its CSRF token) and starts a new server-side session with a new token (C3); every request
is logged in only while that session lives.
"""

from __future__ import annotations

from flask import current_app, request, session
from flask_login import login_user, logout_user

from helpdesk import sessions
from helpdesk.models import Agent

KEY = "sid"


def start_session(agent: Agent) -> None:
    """Log ``agent`` in with a fresh session (nothing of the previous cookie survives)."""
    session.clear()
    settings = current_app.extensions["helpdesk.settings"]
    session[KEY] = sessions.start(agent, request.remote_addr, settings.session_idle_seconds,
                                  settings.session_lifetime_seconds)
    login_user(agent)


def end_session() -> None:
    """Log out: the server-side session ends, so a copy of the cookie is worthless."""
    sessions.end(session.get(KEY))
    logout_user()
    session.clear()


def current_token() -> str | None:
    token = session.get(KEY)
    return token if isinstance(token, str) else None


def session_agent(agent_id: int) -> Agent | None:
    """For the user loader: the agent, if this request's token is one of their live sessions."""
    settings = current_app.extensions["helpdesk.settings"]
    return sessions.agent_of(session.get(KEY), agent_id, settings.session_idle_seconds,
                             settings.session_lifetime_seconds,
                             touch=request.headers.get("X-Helpdesk-Poll") is None)
