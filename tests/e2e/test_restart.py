"""SPEC section 4's delivery guarantees across restarts and `kill -9`."""

from __future__ import annotations

import copy
import time

import pytest

from tests.e2e.harness import CONFIG, Bot, Stand, wait_for

pytestmark = pytest.mark.e2e


def roots_by_tweet(stand: Stand) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for channel in ("C0HEALTH", "C0TRANSPORT"):
        for m in stand.roots(channel):
            p = m["metadata"]["event_payload"]
            out.setdefault(p["tweet_id"], []).append(p["ticket"])
    return out


def assert_exactly_once(stand: Stand, tweet_ids: list[str]) -> None:
    roots = roots_by_tweet(stand)
    assert sorted(roots) == sorted(tweet_ids), "every mention has a root, and only mentions do"
    assert all(len(v) == 1 for v in roots.values()), "no mention has two roots"
    numbers = sorted(n for v in roots.values() for n in v)
    assert numbers == list(range(1, len(tweet_ids) + 1)), "one ticket number each"


def test_restart_neither_repeats_nor_skips(stand: Stand, tmp_path):
    bot = Bot(stand, tmp_path).start()
    first = [stand.tweet(f"citizen{i}", f"@SevaHelp oxygen question {i}")["id"] for i in range(5)]
    wait_for("the first five roots", lambda: len(roots_by_tweet(stand)) == 5)
    assert bot.stop() == 0  # a clean stop exits 0
    while_down = [
        stand.tweet(f"late{i}", f"@SevaHelp hospital question {i}")["id"] for i in range(5)
    ]
    bot.start()
    wait_for("all ten roots", lambda: len(roots_by_tweet(stand)) == 10)
    time.sleep(1.0)  # several polls later, still nothing repeated
    assert_exactly_once(stand, first + while_down)
    bot.kill()


def test_kill_9_in_the_middle_of_a_burst(stand: Stand, tmp_path):
    config = copy.deepcopy(CONFIG)
    config["slack"]["post_rate_per_channel"] = 25  # slow enough to be killed mid-way
    bot = Bot(stand, tmp_path, config).start()
    ids = [stand.tweet(f"c{i}", f"@SevaHelp hospital bed {i}")["id"] for i in range(60)]
    wait_for("some roots", lambda: len(roots_by_tweet(stand)) >= 5)
    bot.kill()
    partial = len(roots_by_tweet(stand))
    assert 0 < partial < 60, "the kill landed in the middle of the burst"
    bot.start()
    wait_for("all sixty roots", lambda: len(roots_by_tweet(stand)) == 60, timeout=30)
    time.sleep(1.0)
    assert_exactly_once(stand, ids)
    bot.kill()


def test_reply_whose_answer_was_lost_goes_out_once(stand: Stand, tmp_path):
    """X accepts the tweet but the answer never arrives; then the bot is killed."""
    bot = Bot(stand, tmp_path).start()
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen tonight?")
    wait_for("the root", lambda: stand.roots("C0HEALTH"))
    (root,) = stand.roots("C0HEALTH")
    stand.fault(method="POST", path_prefix="/2/tweets", status=503, times=1, after_commit=True)
    stand.say("U0AGENT1", "C0HEALTH", "Yes, the desk is open all night.", root["ts"])
    wait_for("the tweet X accepted", stand.bot_tweets)
    bot.kill()
    bot.start()

    def confirmed():
        return [m for m in stand.thread("C0HEALTH", root["ts"]) if "Tweeted" in m["text"]]

    wait_for("the confirmation after the restart", confirmed, timeout=30)
    time.sleep(0.5)
    tweets = stand.bot_tweets()
    assert len(tweets) == 1 and tweets[0]["in_reply_to_tweet_id"] == asked["id"]
    bot.kill()
