"""The structured policy editor without JavaScript: a lead fills in levels, triggers and steps
(with each step's own parameter fields), adds, removes and moves them with buttons, and saves;
a refusal names the field next to it and keeps what was typed; the form round-trips with the
TOML export."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from werkzeug.datastructures import MultiDict

from helpdesk.escalation import policies
from helpdesk.models import EscalationPolicy, EscalationPolicyVersion

from .conftest import three_levels


class _Form(HTMLParser):
    """The fields of ``form#policy-form`` as a browser would post them (no button)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.select, self.fields = False, None, MultiDict()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == "policy-form"
        if not self.inside:
            return
        if tag == "input" and a.get("name") and a.get("type") not in {"submit"}:
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.fields.add(a["name"], a.get("value", "on"))
            else:
                self.fields.add(a["name"], a.get("value") or "")
        elif tag == "select":
            self.select = a.get("name")
        elif tag == "option" and self.select and "selected" in a:
            self.fields.add(self.select, a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None
        if tag == "form":
            self.inside = False


def form_of(html: str) -> MultiDict:
    parser = _Form()
    parser.feed(html)
    return parser.fields


def text(response) -> str:
    return response.get_data(as_text=True)


def press(client, fields: MultiDict, action: str, url: str = "/escalation/edit"):
    data = MultiDict(fields)
    data["action"] = action
    data["csrf_token"] = client.csrf_token()
    return client.http.post(url, data=data)  # a MultiDict: several values of one field


def seed_form() -> MultiDict:
    """The seed policy typed into the form: 75 % owner, 90 % owning team's leads, breach
    reassigns to Network."""
    return MultiDict([
        ("name", "standard"), ("title", "Standard escalation"), ("position", "0"), ("enabled", "on"),
        ("cond_priority", "1"), ("cond_priority", "2"), ("level_count", "3"),
        ("l1_title", "Owner reviews"), ("l1_trigger", "fraction"), ("l1_target", "resolution"),
        ("l1_fraction", "75"), ("l1_minutes", ""), ("l1_step_count", "1"), ("l1_s1_step", "notify_owner"),
        ("l1_s1_p_message", ""),
        ("l2_title", "Team lead"), ("l2_trigger", "fraction"), ("l2_target", "resolution"),
        ("l2_fraction", "90"), ("l2_step_count", "1"), ("l2_s1_step", "notify_owner_team_leads"),
        ("l2_s1_p_message", "Please step in."),
        ("l3_title", "Second line"), ("l3_trigger", "breach"), ("l3_target", "resolution"),
        ("l3_fraction", ""), ("l3_step_count", "1"), ("l3_s1_step", "reassign"), ("l3_s1_p_team", "Network"),
    ])


def test_an_admin_saves_the_seed_policy_from_the_form_and_its_toml_export_reads_back_the_same(desk):
    lead = desk.login(desk.p.admin)  # the seed policy has no team condition: organisation-wide
    saved = press(lead, seed_form(), "save")
    assert saved.status_code == 303
    policy = EscalationPolicy.get(EscalationPolicy.name == "standard")
    assert policy.version == 1
    with desk.app.app_context():
        typed_as_toml = policies.validate(desk.ctx, three_levels())
        exported = text(lead.get("/escalation/standard.toml"))
        read_back = policies.validate(desk.ctx, policies.from_toml(exported))
    assert policies.definition_of(policy) == {"conditions": typed_as_toml["conditions"],
                                              "levels": typed_as_toml["levels"]}
    assert read_back == typed_as_toml
    assert "fraction = 0.75" in exported and 'team = "Network"' in exported


def test_a_policy_loaded_into_the_form_and_saved_unchanged_is_the_same_policy(desk):
    raw = three_levels(conditions={"priority": [2], "type": ["incident"], "team": ["Service Desk"]})
    raw["levels"][1]["conditions"] = {"priority": [2]}
    raw["levels"].append({"title": "Late", "trigger": "after_breach", "target": "resolution", "minutes": 45,
                          "steps": [{"step": "raise_priority", "to": 1},
                                    {"step": "add_watchers", "agents": [desk.p.lead.username]}]})
    desk.policy(raw)
    lead = desk.login(desk.p.lead)
    page = lead.get("/escalation/edit?name=standard")
    fields = form_of(text(page))
    assert fields["l2_cond_priority"] == "2" and fields["l4_minutes"] == "45"
    assert fields["l1_fraction"] == "75" and fields["l4_s2_p_agents"] == desk.p.lead.username
    again = press(lead, fields, "save", "/escalation/edit?name=standard")
    assert again.status_code == 303
    assert EscalationPolicy.get().version == 1  # nothing changed, so no new version
    assert EscalationPolicyVersion.select().count() == 1
    # A change made in the form is a new version that the TOML export shows.
    fields["l4_minutes"] = "60"
    assert press(lead, fields, "save", "/escalation/edit?name=standard").status_code == 303
    assert EscalationPolicy.get().version == 2
    assert "minutes = 60" in text(lead.get("/escalation/standard.toml"))


def test_a_refused_save_names_the_field_next_to_it_keeps_the_typing_and_saves_nothing(desk):
    lead = desk.login(desk.p.lead)
    fields = seed_form()
    fields["l3_s1_p_team"] = ""
    fields["l2_title"] = "Team lead <b>now</b>"
    refused = press(lead, fields, "save")
    page = text(refused)
    assert refused.status_code == 422
    assert EscalationPolicy.select().count() == 0
    assert "Level 3, step 1, parameter &#34;team&#34;: is required" in page
    assert re.search(r'id="l3-s1-p-team"[^>]*aria-invalid="true"', page)
    assert '<p class="field-error" id="l3-s1-p-team-error">is required</p>' in page
    kept = form_of(page)
    assert kept["l2_title"] == "Team lead <b>now</b>" and kept["l2_fraction"] == "90"
    assert "Team lead &lt;b&gt;now&lt;/b&gt;" in page  # text, not markup
    fields = seed_form()
    fields["l1_fraction"] = "most"
    page = text(press(lead, fields, "save"))
    assert "Level 1, &#34;fraction&#34;: a share of the target above 0" in page
    assert 'id="l1-fraction-error"' in page
    fields = seed_form()
    fields["l2_s1_step"] = "page_the_moon"
    page = text(press(lead, fields, "save"))
    assert "Level 2, step 1: there is no escalation step named &#39;page_the_moon&#39;" in page
    assert EscalationPolicy.select().count() == 0


def test_add_remove_and_move_buttons_rebuild_the_form_without_saving(desk):
    lead = desk.login(desk.p.lead)
    fields = form_of(text(press(lead, seed_form(), "add_level")))
    assert fields["level_count"] == "4" and fields["l4_trigger"] == "breach"
    assert fields["l4_s1_step"] == "notify_owner"
    fields = form_of(text(press(lead, fields, "add_step:4")))
    assert fields["l4_step_count"] == "2"
    fields["l4_s2_step"] = "reassign"  # the step's own parameters appear once it is chosen
    page = text(press(lead, fields, "refresh"))
    assert 'name="l4_s2_p_team"' in page
    fields = form_of(page)
    fields = form_of(text(press(lead, fields, "up_step:4:2")))
    assert fields["l4_s1_step"] == "reassign" and fields["l4_s2_step"] == "notify_owner"
    fields = form_of(text(press(lead, fields, "up_level:3")))
    assert fields["l2_title"] == "Second line" and fields["l3_title"] == "Team lead"
    fields = form_of(text(press(lead, fields, "remove_level:4")))
    fields = form_of(text(press(lead, fields, "remove_step:1:1")))
    assert fields["level_count"] == "3" and fields["l1_step_count"] == "0"
    assert EscalationPolicy.select().count() == 0
    refused = press(lead, fields, "save")
    assert refused.status_code == 422 and "Level 1: a level needs at least one step" in text(refused)


def test_only_leads_use_the_editor_and_it_needs_the_csrf_token(desk):
    owner = desk.login(desk.p.owner)
    assert press(owner, seed_form(), "save").status_code == 403
    lead = desk.login(desk.p.lead)
    data = seed_form()
    data["action"] = "save"
    assert lead.http.post("/escalation/edit", data=data).status_code == 400
    assert EscalationPolicy.select().count() == 0
    # An existing policy's name cannot be changed through the form (an organisation-wide
    # policy: an admin's).
    lead = desk.login(desk.p.admin)
    assert press(lead, seed_form(), "save").status_code == 303
    renamed = form_of(text(lead.get("/escalation/edit?name=standard")))
    renamed["name"] = "other"
    refused = press(lead, renamed, "save", "/escalation/edit?name=standard")
    assert refused.status_code == 422 and "cannot change" in text(refused)


def test_the_form_draft_opens_in_the_simulator(desk):
    lead = desk.login(desk.p.lead)
    page = press(lead, seed_form(), "simulate")
    assert page.status_code == 200 and EscalationPolicy.select().count() == 0
    body = text(page)
    assert "Escalation simulator" in body and "fraction = 0.9" in body
    result = lead.post("/escalation/simulate", data={"logged_at": "2026-03-06T16:30", "priority": "2",
                                                     "horizon": "96", "type": "incident",
                                                     "draft": policies.dict_to_toml(policies.flatten(
                                                         _validated(desk, three_levels())))})
    assert "With the draft policy" in text(result)


def _validated(desk, raw):
    with desk.app.app_context():
        return policies.validate(desk.ctx, raw)
