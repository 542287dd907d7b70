"""Triage through the real `seva run` process and the stand-ins: what routed a ticket,
urgent tickets, ignored accounts (SPEC section 5)."""

from __future__ import annotations

import copy
import time

import pytest
import requests

from tests.e2e.harness import CONFIG, Bot, Stand, wait_for

pytestmark = pytest.mark.e2e

TRIAGED = copy.deepcopy(CONFIG)
TRIAGED["triage"] = {"urgent": ["ambulance", "एम्बुलेंस"], "ignore": ["spam_bot"]}


@pytest.fixture
def bot(stand: Stand, tmp_path):
    b = Bot(stand, tmp_path, TRIAGED).start()
    yield b
    b.kill()


def root_of(stand: Stand, channel: str, tweet_id: str) -> dict:
    def probe():
        return next(
            (
                m
                for m in stand.roots(channel)
                if m["metadata"]["event_payload"]["tweet_id"] == tweet_id
            ),
            None,
        )

    return wait_for(f"the root of tweet {tweet_id}", probe)


def test_urgent_ignored_and_matched_end_to_end(stand: Stand, bot: Bot):
    calm = stand.tweet("citizen_asha", "@SevaHelp is the oxygen desk open? #COVID19")
    stand.tweet("spam_bot", "@SevaHelp hospital followers cheap, ambulance")
    urgent = stand.tweet("ravi_k", "@SevaHelp एम्बुलेंस नहीं आई, hospital please")
    calm_root = root_of(stand, "C0HEALTH", calm["id"])
    urgent_root = root_of(stand, "C0HEALTH", urgent["id"])

    # What routed each ticket; the urgent one says so and pings the lead at once.
    assert "matched: #covid19, oxygen" in calm_root["text"]
    assert "URGENT" not in calm_root["text"] and "<@U0LEAD>" not in calm_root["text"]
    first_line = urgent_root["text"].splitlines()[0]
    assert "URGENT" in first_line and "एम्बुलेंस" in first_line
    assert "<@U0AGENT1>" in urgent_root["text"] and "<@U0LEAD>" in urgent_root["text"]

    # The ignored account made no ticket, and is counted.
    time.sleep(0.5)  # several polls: nothing more may arrive
    assert len(stand.roots("C0HEALTH")) == 2
    metrics = requests.get(bot.url("/metrics"), timeout=10).text
    assert "seva_ignored_mentions_total 1.0" in metrics
    assert 'seva_urgent_tickets_total{department="health"} 1.0' in metrics

    # `list` shows the urgent ticket first though it is the newer one.
    listed = stand.command("U0AGENT1", "C0HEALTH", "list")["response"]["text"]
    lines = [line for line in listed.splitlines() if line.startswith("#")]
    assert lines[0].startswith("#2 · open · *URGENT*") and lines[1].startswith("#1 · open")

    # A follow-up with an urgent word makes the calm ticket urgent, and says so.
    stand.tweet("citizen_asha", "@SevaHelp he collapsed, send an ambulance", calm["id"])

    def alarm():
        return [
            m
            for m in stand.thread("C0HEALTH", calm_root["ts"])
            if "Now URGENT" in m["text"] and "<@U0LEAD>" in m["text"]
        ]

    wait_for("the urgent follow-up in the thread", alarm)
    metrics = requests.get(bot.url("/metrics"), timeout=10).text
    assert 'seva_urgent_tickets_total{department="health"} 2.0' in metrics
