"""Slack Connect: who is from another workspace (adapters/slack/parse.py), read the way
bolt reads the actor's team (facts-issue7 section 14). Unsure means external."""

from __future__ import annotations

import pytest

from adapters.slack.parse import button_presses, from_another_workspace, slash_command

HOME = {"T0SEVA"}
AUTH = {"authorizations": [{"team_id": "T0SEVA", "enterprise_id": "E0GOV"}]}


@pytest.mark.parametrize(
    ("envelope", "event", "external"),
    [
        ({**AUTH, "is_ext_shared_channel": False}, {"user": "U1", "team": "T0SEVA"}, False),
        ({**AUTH, "is_ext_shared_channel": True}, {"user": "U1", "user_team": "T0SEVA"}, False),
        ({**AUTH, "is_ext_shared_channel": True}, {"user_team": "T0PARTNER"}, True),
        ({**AUTH, "is_ext_shared_channel": True}, {"team": "T0PARTNER"}, True),
        ({**AUTH, "is_ext_shared_channel": True}, {"user_team": "E0GOV"}, False),  # our org
        ({**AUTH, "is_ext_shared_channel": True}, {"user_team": "E0OTHER"}, True),
        ({**AUTH, "is_ext_shared_channel": True}, {"user": "U1"}, True),  # cannot tell
        ({**AUTH, "is_ext_shared_channel": False}, {"user": "U1"}, False),
        (
            {**AUTH, "is_ext_shared_channel": True},
            {"subtype": "message_changed", "message": {"user_team": "T0PARTNER"}},
            True,
        ),
    ],
)
def test_a_message_from_another_workspace(envelope, event, external):
    assert from_another_workspace(envelope, event, HOME) is external


def test_commands_and_buttons_name_the_askers_workspace():
    _, ours = slash_command({"team_id": "T0SEVA", "user_id": "U1", "channel_id": "C1"}, HOME)
    _, theirs = slash_command({"team_id": "T0PARTNER", "user_id": "U2"}, HOME)
    _, unnamed = slash_command({"user_id": "U3"}, HOME)
    assert (ours.external, theirs.external, unnamed.external) == (False, True, True)
    body = {"actions": [{"action_id": "seva_send", "value": "1"}], "channel": {"id": "C1"}}
    (pressed,) = button_presses({**body, "user": {"id": "U1", "team_id": "T0SEVA"}}, HOME)
    (guest,) = button_presses({**body, "user": {"id": "U2", "team_id": "T0PARTNER"}}, HOME)
    assert (pressed.external, guest.external) == (False, True)
