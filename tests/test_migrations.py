"""The migrations build exactly the schema the models describe, on both databases."""

from playhouse.schema_diff import diff_models

from helpdesk import schema
from helpdesk.db import database
from helpdesk.models import MODELS


def test_migrated_schema_matches_the_models(app):
    # `app` ran every migration on a fresh database.
    difference = diff_models(database.obj, MODELS)
    assert not difference, str(difference)


def test_upgrade_twice_applies_nothing(app):
    assert schema.pending(database) == []
    assert schema.upgrade(database) == []
