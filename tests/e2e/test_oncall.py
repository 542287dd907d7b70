"""On call and oversight through the real `seva run` process, on a controlled clock."""

from __future__ import annotations

import copy
import re
import time
from datetime import datetime, timedelta
from datetime import time as datetime_time
from zoneinfo import ZoneInfo

import pytest

from bot.config import Oncall
from bot.rotation import shift_at
from tests.e2e.harness import CONFIG, Bot, Stand, wait_for

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


ROTATION = {
    "members": ["U0AGENT1", "U0AGENT2"],
    "shift_hours": 8,
    "timezone": "Asia/Kolkata",
    "starts": "2026-01-01T09:00",  # 09:00, 17:00 and 01:00 in India
    "slack_usergroup": "S0HEALTHONCALL",
}


def with_rotation(**health: object) -> dict:
    config = copy.deepcopy(CONFIG)
    config["departments"][0]["oncall"] = dict(ROTATION)
    config["departments"][0].update(health)
    return config


def handoffs(stand: Stand) -> list[dict]:
    return [m for m in stand.messages("C0HEALTH") if m["text"].startswith("*On call now*")]


def group(stand: Stand) -> list[str]:
    (g,) = [g for g in stand.slack_state()["usergroups"] if g["id"] == "S0HEALTHONCALL"]
    return g["users"]


def test_one_hand_off_per_shift_change_across_a_restart_and_the_group_follows(world, tmp_path):
    clock, stand = world
    config = with_rotation()
    rotation = Oncall.model_validate(ROTATION)
    change = shift_at(rotation, clock.now()).ends
    assert change is not None
    clock.set(change - timedelta(minutes=1))  # a minute before a shift change
    before = shift_at(rotation, clock.now()).member
    bot = Bot(stand, tmp_path, config, clock.env).start()
    wait_for("the user group set to who is on call", lambda: group(stand) == [before])
    time.sleep(0.5)  # several ticks: the shift began eight hours ago, no hand-off now
    assert handoffs(stand) == []

    clock.advance(minutes=2)
    after = shift_at(rotation, clock.now()).member
    assert after != before
    (first,) = wait_for("the hand-off", lambda: handoffs(stand))
    assert f"<@{after}>" in first["text"] and "No open tickets." in first["text"]
    wait_for("the user group handed over", lambda: group(stand) == [after])

    bot.kill()  # kill -9, then the next change passes while the bot is down
    clock.advance(hours=8)
    bot.start()
    wait_for("the hand-off missed while down", lambda: len(handoffs(stand)) == 2)
    wait_for("the user group handed back", lambda: group(stand) == [before])
    bot.stop()
    bot.start()  # a restart without a change posts nothing
    time.sleep(1.0)
    texts = [m["text"] for m in handoffs(stand)]
    assert len(texts) == 2 and f"<@{before}>" in texts[1]


def test_escalation_climbs_one_step_at_a_time_each_once_across_a_restart(world, tmp_path):
    clock, stand = world
    config = with_rotation(escalate_again_after_minutes=60, escalate_again_to=["U0HEAD"])
    bot = Bot(stand, tmp_path, config, clock.env).start()
    asked = stand.tweet("citizen_a", "@SevaHelp no oxygen at the district hospital")
    root = root_of(stand, asked["id"])
    on_call = on_call_in(root)

    def steps() -> list[str]:
        return [
            m["text"] for m in stand.thread("C0HEALTH", root["ts"]) if "Escalation" in m["text"]
        ]

    clock.advance(minutes=31)
    (first,) = wait_for("the first step", steps)
    assert "<@U0LEAD>" in first and f"(on call: <@{on_call}>)" in first
    assert "<@U0HEAD>" not in first
    clock.advance(minutes=20)  # 51 minutes: not yet
    time.sleep(0.5)
    assert len(steps()) == 1
    clock.advance(minutes=10)
    wait_for("the second step", lambda: len(steps()) == 2)
    second = steps()[1]
    assert second.startswith("*Escalation, second step:*") and "<@U0HEAD>" in second
    bot.kill()
    clock.advance(hours=2)
    bot.start()  # nothing is repeated, however late it is now
    time.sleep(1.0)
    assert len(steps()) == 2


def digests(stand: Stand, channel: str = "C0HEALTH") -> list[str]:
    return [m["text"] for m in stand.messages(channel) if m["text"].startswith("*Daily digest*")]


def test_the_daily_digest_goes_out_once_with_the_days_figures(world, tmp_path):
    clock, stand = world
    config = copy.deepcopy(CONFIG)
    config["digest"] = {"at": "18:00", "timezone": "Asia/Kolkata"}
    ist = ZoneInfo("Asia/Kolkata")
    today = clock.now().astimezone(ist).date()
    clock.set(datetime.combine(today, datetime_time(16, 30), ist))
    bot = Bot(stand, tmp_path, config, clock.env).start()
    asked_at = clock.now()
    asked = [stand.tweet(f"citizen{i}", f"@SevaHelp oxygen question {i}")["id"] for i in range(3)]
    roots = [root_of(stand, t) for t in asked]

    def answer(after: timedelta, i: int, text: str, tweets: int) -> None:
        # However long the real process took to get here; the tweets went out a moment
        # after asked_at, so the figures (shown in whole minutes) get 20 s to spare.
        clock.set(asked_at + after + timedelta(seconds=20))
        stand.say("U0AGENT1", "C0HEALTH", text, roots[i]["ts"])
        wait_for(f"reply {tweets}", lambda: len(stand.bot_tweets()) == tweets)

    answer(timedelta(minutes=10), 0, "Ward 3 has cylinders.", 1)  # a first response in 10m
    answer(timedelta(minutes=60), 1, "Please call 1075.", 2)  # an hour: past the target
    clock.set(asked_at + timedelta(minutes=65))
    assert "closed" in str(stand.command("U0AGENT1", "C0HEALTH", "close 1 resolved")["response"])
    clock.set(asked_at + timedelta(minutes=89))  # 17:59: not yet
    time.sleep(0.5)
    assert digests(stand) == []

    clock.set(asked_at + timedelta(minutes=90, seconds=30))
    (text,) = wait_for("the digest", lambda: digests(stand))
    assert "Health and hospitals, the 24 hours to " + f"{today.isoformat()} 18:00 IST" in text
    assert "new 3 · answered 2 · closed 1 · still open 2" in text
    assert "first response: median 10m · 90th percentile 1h 0m · 2 past target" in text
    assert "Oldest open (2 of 2):" in text and f"/status/{asked[1]}|#2>" in text
    wait_for("transport's digest", lambda: digests(stand, "C0TRANSPORT"))
    assert digests(stand, "C0TRANSPORT")[0].endswith("No open tickets.")

    bot.kill()
    clock.advance(hours=1)
    bot.start()  # the same day's digest is not posted again
    time.sleep(1.0)
    assert len(digests(stand)) == 1
    clock.advance(hours=23)  # the next day's
    wait_for("the next day's digest", lambda: len(digests(stand)) == 2)
    assert "new 0 · answered 0 · closed 0 · still open 2" in digests(stand)[1]
