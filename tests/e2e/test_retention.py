"""The retention purge through the real `seva run` process on the controlled clock
(SPEC section 5): a closed ticket past `safety.retention_days` loses the citizen's
words and name from the database; an open one keeps them; ids and figures stay."""

from __future__ import annotations

import copy
import sqlite3

import pytest

from tests.e2e.harness import CONFIG, Bot, wait_for

pytestmark = pytest.mark.e2e

QUESTION = "@SevaHelp oxygen refill near AIIMS gate 2? call me on 98765 43210"


def dump(bot: Bot) -> str:
    with sqlite3.connect(bot.db_url.removeprefix("sqlite:///")) as db:
        return "\n".join(db.iterdump())


def test_a_closed_ticket_past_the_period_is_purged_and_an_open_one_kept(world, tmp_path):
    clock, stand = world
    config = copy.deepcopy(CONFIG)
    config["safety"] = {"retention_days": 30}
    bot = Bot(stand, tmp_path, config, clock.env).start()
    asked = stand.tweet("citizen_gone", QUESTION)
    root = wait_for("the root", lambda: stand.roots("C0HEALTH"))[0]
    stand.say("U0AGENT1", "C0HEALTH", "Refills at gate 2 until 6 pm.", root["ts"])
    wait_for("the reply", stand.bot_tweets)
    assert "closed" in str(stand.command("U0AGENT1", "C0HEALTH", "close 1")["response"])
    stand.tweet("citizen_kept", "@SevaHelp oxygen at the district hospital?")
    wait_for("the second root", lambda: len(stand.roots("C0HEALTH")) == 2)
    assert "citizen_gone" in dump(bot) and "98765 43210" in dump(bot)

    bot.stop()
    clock.advance(days=31)
    bot.start()  # the purge runs at each start, and daily
    wait_for("the purge", lambda: "retention.purged tickets=1" in bot.log())
    status = str(stand.command("U0AGENT1", "C0HEALTH", "status 1")["response"])
    assert "closed" in status and "From (name removed)" in status
    assert f"x.com/i/status/{asked['id']}" in status  # the tweet is still found by its id
    bot.stop()

    kept = dump(bot)
    for gone in ("citizen_gone", "98765", "AIIMS gate 2", "Refills at gate 2"):
        assert gone not in kept, gone
    assert asked["id"] in kept  # the ids stay
    assert "citizen_kept" in kept and "district hospital" in kept  # open: untouched
