"""Times show the viewer's zone everywhere, durations and shares read as words (issue #12:
"Times never show a zone … '480 min of business hours', '50.0%'"); exports stay in UTC."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from jinja2 import Template

from helpdesk.rendering import (
    format_duration,
    format_percent,
    format_work,
    local_time,
    target_span,
    time_element,
    zone_stamps,
)

SUMMER = dt.datetime(2026, 6, 9, 8, 15)  # stored as naive UTC; 09:15 in London (BST)


@pytest.mark.parametrize(("minutes", "words"), [
    (0, "under a minute"), (1, "1 minute"), (45, "45 minutes"), (60, "1 hour"), (61, "1 hour 1 minute"),
    (200, "3 hours 20 minutes"), (24 * 60, "1 day"), (52 * 60 + 5, "2 days 4 hours"), (-5, "under a minute"),
])
def test_durations_read_as_words(minutes, words):
    assert format_duration(dt.timedelta(minutes=minutes)) == words


@pytest.mark.parametrize(("fraction", "shown"), [(0.5, "50 %"), (0.875, "87.5 %"), (0.9, "90 %"),
                                                 (1, "100 %"), (None, "—")])
def test_shares_read_as_people_write_them(fraction, shown):
    assert format_percent(fraction) == shown


def test_sla_targets_say_what_kind_of_hours_they_count():
    assert target_span(8 * 3600, "business") == "8 business hours"
    assert target_span(30 * 60, "business") == "30 business minutes"
    assert target_span(24 * 3600, "business") == "24 business hours"  # three business days, not "1 day"
    assert target_span(4 * 3600, None) == "4 hours, around the clock"
    assert target_span(90 * 60, "uk-support") == "1 hour 30 minutes in the uk-support calendar"


def test_time_over_or_left_on_a_clock_is_said_in_its_calendars_hours():
    # 100 business hours over is twelve and a half working days, not "4 days 4 hours".
    assert format_work(dt.timedelta(hours=100), "business") == "100 business hours"
    assert format_work(dt.timedelta(hours=3, minutes=20), "uk-support") == "3 working hours 20 minutes"
    assert format_work(dt.timedelta(minutes=1), "business") == "1 business minute"
    # Not "0 … minutes left"; and not "under a minute", which a target breached at 17:00 still
    # read the next morning (no business time since), as if it had only just run out.
    assert format_work(dt.timedelta(seconds=20), "business") == "under a business minute"
    assert format_work(dt.timedelta(seconds=20), "uk-support") == "under a working minute"
    assert format_work(dt.timedelta(seconds=20), None) == "under a minute"  # around the clock
    assert format_work(dt.timedelta(hours=100), None) == "4 days 4 hours"  # around the clock


def test_a_local_time_names_its_zone_and_keeps_a_custom_format():
    assert local_time(SUMMER, "Europe/London", with_zone=True) == "2026-06-09 09:15 BST"
    winter = dt.datetime(2026, 1, 9, 8, 15)
    assert local_time(winter, "Europe/London", with_zone=True) == "2026-01-09 08:15 GMT"
    assert local_time(SUMMER, "Europe/London", "%H:%M:%S", with_zone=True) == "09:15:00 BST"
    assert local_time(SUMMER, "Asia/Dubai", with_zone=True) == "2026-06-09 12:15 UTC+04:00"  # no abbreviation
    # a date alone has no zone
    assert local_time(SUMMER, "Europe/London", "%Y-%m-%d", with_zone=True) == "2026-06-09"
    assert local_time(None, "Europe/London", with_zone=True) == "—"


def test_a_time_element_carries_the_zone_name_and_utc_for_machines():
    html = str(time_element(SUMMER, "Europe/London"))
    assert html == '<time datetime="2026-06-09T08:15:00Z" title="Europe/London">2026-06-09 09:15 BST</time>'
    relative = str(time_element(SUMMER, "Europe/London", moment=SUMMER - dt.timedelta(hours=3)))
    assert ">in 3 hours</time>" in relative and 'title="2026-06-09 09:15 BST (Europe/London)"' in relative
    past = str(time_element(SUMMER, "Europe/London", moment=SUMMER + dt.timedelta(minutes=5)))
    assert ">5 minutes ago</time>" in past


def test_stored_utc_stamps_are_shown_in_the_viewers_zone():
    text = "Resolution target breached (due 2026-06-09 08:15 UTC)"
    assert zone_stamps(text, "Europe/London") == "Resolution target breached (due 2026-06-09 09:15 BST)"
    assert zone_stamps("no time here", "Europe/London") == "no time here"


def test_the_filters_follow_the_agents_zone_and_stay_plain_text_in_attributes(app, login, personas):
    client = login(personas.owner)
    assert client.post("/profile", {"time_zone": "Europe/London"}).status_code == 303
    source = ('<span title="due {{ t|localtime }}">{{ t|localtime("%H:%M:%S") }}</span>'
              "{{ t|timetag }}|{{ d|duration }}|{{ f|percent }}|{{ s|target_span('business') }}")
    with app.test_request_context():
        from flask_login import login_user

        from helpdesk.models import Agent

        login_user(Agent.get_by_id(personas.owner.id))
        template: Template = app.jinja_env.from_string(source)
        html = template.render(t=SUMMER, d=dt.timedelta(hours=3, minutes=20), f=0.5, s=28800)
    assert html == ('<span title="due 2026-06-09 09:15 BST">09:15:00 BST</span>'
                    '<time datetime="2026-06-09T08:15:00Z" title="Europe/London">2026-06-09 09:15 BST</time>'
                    "|3 hours 20 minutes|50 %|8 business hours")


def test_pages_show_the_zone_on_times(login, personas, log_incident):
    incident = log_incident(title="Clock check")
    client = login(personas.owner)
    assert client.post("/profile", {"time_zone": "Asia/Kolkata"}).status_code == 303
    queue = client.get("/queues/owned").get_data(as_text=True)
    # (the day kept in one piece where a narrow cell wraps the time)
    assert re.search(r'<span class="day">\d{4}-\d{2}-\d{2}</span> \d{2}:\d{2} IST', queue), \
        "the queue's times name the zone"
    page = client.get(f"/incidents/{incident.id}").get_data(as_text=True)
    assert re.search(r"Logged \d{4}-\d{2}-\d{2} \d{2}:\d{2} IST", page)


def test_exports_keep_utc_times(login, personas, log_incident):
    incident = log_incident(title="Export check")
    client = login(personas.owner)
    assert client.post("/profile", {"time_zone": "Asia/Kolkata"}).status_code == 303
    csv = client.get("/queues/owned/export?format=csv").get_data(as_text=True)
    assert "Created (UTC)" in csv and "IST" not in csv
    assert incident.created_at.strftime("%Y-%m-%d %H:%M:%S") in csv  # machine-readable, unconverted


def test_escalation_triggers_say_their_delay_in_words():
    from helpdesk.escalation.policies import describe_trigger

    assert describe_trigger({"trigger": "after_breach", "target": "resolution", "minutes": 90}) == \
        "1 hour 30 minutes after the resolution breach"
    assert describe_trigger({"trigger": "before_due", "target": "response", "minutes": 30}) == \
        "30 minutes before the response due time"


@pytest.mark.parametrize(("count", "words"), [
    (0, "0 KB"), (1, "1 KB"), (1024, "1 KB"), (1025, "2 KB"), (10 * 1024 * 1024, "10.0 MB"),
    (10 * 1024 * 1024 + 200_000, "10.2 MB"),
])
def test_sizes_read_as_people_read_them_and_never_round_under_a_limit(count, words):
    from helpdesk.words import format_size

    assert format_size(count) == words
