"""The controlled clock drives the real `seva run` process through time (adapters/clock.py)."""

from __future__ import annotations

import time

import pytest
import requests

from tests.e2e.harness import Bot, wait_for

pytestmark = pytest.mark.e2e


def test_moving_the_clock_ages_and_escalates_a_ticket_once(world, tmp_path):
    clock, stand = world
    bot = Bot(stand, tmp_path, extra_env=clock.env).start()
    health = requests.get(bot.url("/healthz"), timeout=10).json()
    assert health["clock"]["controlled"] is True  # never silent about it
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen cylinder refill?")
    root = wait_for("the root", lambda: stand.roots("C0HEALTH"))[0]
    assert root["metadata"]["event_payload"]["tweet_id"] == asked["id"]
    assert "Age: 0m" in str(stand.command("U0AGENT1", "C0HEALTH", "status 1")["response"])

    clock.advance(minutes=29)
    assert "Age: 29m" in str(stand.command("U0AGENT1", "C0HEALTH", "status 1")["response"])
    time.sleep(0.5)  # several escalation rounds: not yet due
    assert not [m for m in stand.thread("C0HEALTH", root["ts"]) if "Escalation" in m["text"]]

    clock.advance(minutes=2)  # 31 minutes without a public reply

    def escalations():
        return [m for m in stand.thread("C0HEALTH", root["ts"]) if "Escalation" in m["text"]]

    (escalation,) = wait_for("the escalation", escalations)
    assert "<@U0LEAD>" in escalation["text"]
    bot.stop()
    clock.advance(hours=3)
    bot.start()  # a restart, hours later, does not repeat it
    time.sleep(1.0)
    assert len(escalations()) == 1
