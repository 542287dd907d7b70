"""On call and oversight through the real `seva run` process, on a controlled clock."""

from __future__ import annotations

import re

import pytest

from tests.e2e.harness import Bot, Stand, wait_for

pytestmark = pytest.mark.e2e


def root_of(stand: Stand, tweet_id: str) -> dict:
    def probe():
        return next(
            (
                m
                for m in stand.roots("C0HEALTH")
                if m["metadata"]["event_payload"]["tweet_id"] == tweet_id
            ),
            None,
        )

    return wait_for(f"the root of tweet {tweet_id}", probe)


def on_call_in(root: dict) -> str:
    (who,) = re.findall(r"(?i)on call: <@(U\w+)>", root["text"])
    return who


def test_an_override_changes_who_new_tickets_mention_until_it_runs_out(world, tmp_path):
    clock, stand = world
    Bot(stand, tmp_path, extra_env=clock.env).start()
    first = stand.tweet("citizen_a", "@SevaHelp oxygen in ward 3?")
    assert on_call_in(root_of(stand, first["id"])) == "U0AGENT1"  # the rotation

    answer = stand.command("U0AGENT1", "C0HEALTH", "oncall set <@U0AGENT2|vikram> 4")
    assert "<@U0AGENT2> is on call for Health and hospitals until" in str(answer["response"])
    second = stand.tweet("citizen_b", "@SevaHelp hospital beds free?")
    assert on_call_in(root_of(stand, second["id"])) == "U0AGENT2"
    shown = str(stand.command("U0VISITOR", "C0HEALTH", "oncall health")["response"])
    assert shown.index("<@U0AGENT2>") < shown.index("then <@U0AGENT1>")  # anyone may look

    clock.advance(hours=4, minutes=1)  # the override ran out
    third = stand.tweet("citizen_c", "@SevaHelp oxygen refill centre?")
    assert on_call_in(root_of(stand, third["id"])) == "U0AGENT1"
