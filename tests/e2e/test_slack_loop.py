"""The whole loop through the real `seva run` process, over HTTP, against the stand-ins."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import requests

from bot.tweettext import weighted_length
from tests.e2e.harness import HANDLE, TOKENS, Bot, Stand, wait_for

pytestmark = pytest.mark.e2e

NASTY = "@SevaHelp oxygen?? <!channel> <@U0LEAD> <http://evil.example|innocent> @here & more"


def root_for(stand: Stand, channel: str, tweet_id: str) -> dict:
    def probe():
        return next(
            (
                m
                for m in stand.roots(channel)
                if m["metadata"]["event_payload"]["tweet_id"] == tweet_id
            ),
            None,
        )

    return wait_for(f"the thread root of tweet {tweet_id}", probe)


def test_mention_to_root_reply_tweet_and_confirmation(stand: Stand, bot: Bot):
    asked = stand.tweet("citizen_asha", NASTY)
    root = root_for(stand, "C0HEALTH", asked["id"])
    payload = root["metadata"]["event_payload"]
    assert root["metadata"]["event_type"] == "seva_ticket"
    assert payload["ticket"] == 1 and payload["tweet_id"] == asked["id"]
    text = root["text"]
    assert "<@U0AGENT1>" in text  # the on-call member is pinged ...
    for live in ("<!channel>", "<@U0LEAD>", "<http://evil.example|innocent>", "<!here>"):
        assert live not in text  # ... and nothing the citizen wrote is live
    assert "&lt;!channel&gt;" in text and "&amp; more" in text
    assert f"https://x.com/citizen_asha/status/{asked['id']}" in text
    assert "@citizen_asha" in text

    # An internal note first, then the real answer.
    stand.say("U0AGENT1", "C0HEALTH", "note: checking with the oxygen desk", root["ts"])
    stand.say("U0AGENT1", "C0HEALTH", "Yes: call 1075 & go to counter 3 <today>.", root["ts"])
    tweets = wait_for("the reply tweet", stand.bot_tweets)
    assert len(tweets) == 1
    reply = tweets[0]
    assert reply["in_reply_to_tweet_id"] == asked["id"]
    assert reply["text"] == "Yes: call 1075 & go to counter 3 <today>."  # unescaped for X

    def confirmed():
        return [m for m in stand.thread("C0HEALTH", root["ts"]) if reply["id"] in m["text"]]

    (confirmation,) = wait_for("the confirmation in the thread", confirmed)
    assert confirmation.get("bot_id")
    time.sleep(0.5)  # several poll and delivery cycles: nothing more may go out
    assert len(stand.bot_tweets()) == 1


def test_long_reply_is_a_valid_numbered_chain(stand: Stand, bot: Bot):
    asked = stand.tweet("citizen_asha", "@SevaHelp which hospitals have oxygen beds?")
    root = root_for(stand, "C0HEALTH", asked["id"])
    answer = " ".join(
        f"Hospital {i} (ward {i}) has oxygen beds, call 0{i}0-2345-678 before you go."
        for i in range(1, 12)
    )
    stand.say("U0AGENT1", "C0HEALTH", answer, root["ts"])
    chain = wait_for(
        "the whole chain",
        lambda: (
            (ts := stand.bot_tweets()) and ts[-1]["text"].endswith(f"({len(ts)}/{len(ts)})") and ts
        ),
    )
    n = len(chain)
    assert n >= 3
    for i, t in enumerate(chain):
        assert t["text"].endswith(f"({i + 1}/{n})")
        assert weighted_length(t["text"]) <= 280
        assert t["in_reply_to_tweet_id"] == (asked["id"] if i == 0 else chain[i - 1]["id"])
    words = " ".join(t["text"].rsplit(" (", 1)[0] for t in chain).split()
    assert words == answer.split()


def test_followup_lands_in_the_same_thread(stand: Stand, bot: Bot):
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen at the district hospital?")
    root = root_for(stand, "C0HEALTH", asked["id"])
    stand.say("U0AGENT2", "C0HEALTH", "Yes, 24x7.", root["ts"])
    (reply,) = wait_for("the reply tweet", stand.bot_tweets)
    follow = stand.tweet(
        "citizen_asha", f"@{HANDLE} thank you! is a copy ok?", in_reply_to=reply["id"]
    )

    def in_thread():
        return [m for m in stand.thread("C0HEALTH", root["ts"]) if "is a copy ok?" in m["text"]]

    wait_for("the follow-up in the thread", in_thread)
    assert len(stand.roots("C0HEALTH")) == 1
    # The next answer replies to the citizen's follow-up.
    stand.say("U0AGENT2", "C0HEALTH", "Yes, a copy is fine.", root["ts"])
    tweets = wait_for(
        "the second reply", lambda: len(stand.bot_tweets()) == 2 and stand.bot_tweets()
    )
    assert tweets[1]["in_reply_to_tweet_id"] == follow["id"]


def test_non_agents_notes_bots_edits_and_retries_never_tweet_twice(stand: Stand, bot: Bot):
    asked = stand.tweet("citizen_asha", "@SevaHelp hospital visiting hours?")
    root = root_for(stand, "C0HEALTH", asked["id"])
    stand.say("U0VISITOR", "C0HEALTH", "I am not an agent", root["ts"])
    stand.say("U0AGENT1", "C0HEALTH", "PRIVATE: internal", root["ts"])
    sent = stand.say("U0AGENT1", "C0HEALTH", "4pm to 7pm.", root["ts"])
    assert sent["status"] == 200
    wait_for("the reply", stand.bot_tweets)
    assert stand.redeliver(sent["event_id"])["status"] == 200  # Slack's retry of the same event
    requests.post(
        stand.url + "/slack/sandbox/messages/edit",
        json={"user": "U0AGENT1", "channel": "C0HEALTH", "ts": sent["ts"], "text": "4pm to 8pm."},
        timeout=10,
    )
    time.sleep(1.0)
    assert [t["text"] for t in stand.bot_tweets()] == ["4pm to 7pm."]


def test_refusal_is_explained_in_the_thread(stand: Stand, bot: Bot):
    asked = stand.tweet("citizen_asha", "@SevaHelp is the hospital open?")
    root = root_for(stand, "C0HEALTH", asked["id"])
    stand.delete_tweet(asked["id"])
    stand.say("U0AGENT1", "C0HEALTH", "Yes it is.", root["ts"])

    def explained():
        return [m for m in stand.thread("C0HEALTH", root["ts"]) if "refused" in m["text"]]

    (msg,) = wait_for("the refusal in the thread", explained)
    assert "deleted or not visible" in msg["text"]
    time.sleep(0.5)
    assert stand.bot_tweets() == []


def test_confirm_mode_tweets_only_after_send(stand: Stand, bot: Bot):
    asked = stand.tweet("ravi_k", "@SevaHelp the 5:40 train is cancelled, any bus?")
    root = root_for(stand, "C0TRANSPORT", asked["id"])
    stand.say("U0TRANSPORT", "C0TRANSPORT", "A replacement bus leaves at 6:10.", root["ts"])

    def preview():
        return [
            m
            for m in stand.thread("C0TRANSPORT", root["ts"])
            if m.get("bot_id") and m.get("blocks")
        ]

    (msg,) = wait_for("the preview with a Send button", preview)
    assert stand.bot_tweets() == []
    buttons = [e for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]]
    send = next(b for b in buttons if b["action_id"] == "seva_send")
    stand.click("U0TRANSPORT", "C0TRANSPORT", msg["ts"], send["action_id"], send["value"])
    (t,) = wait_for("the tweet after Send", stand.bot_tweets)
    assert t["text"] == "A replacement bus leaves at 6:10."

    def settled():
        now = next(m for m in stand.messages("C0TRANSPORT") if m["ts"] == msg["ts"])
        return not now.get("blocks") and now["text"].startswith("Sent by <@U0TRANSPORT>") and now

    wait_for("the preview to lose its buttons", settled)


def test_slash_commands_answer_the_asker(stand: Stand, bot: Bot):
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen?")
    root = root_for(stand, "C0HEALTH", asked["id"])
    started = time.monotonic()
    answer = stand.command("U0AGENT2", "C0HEALTH", "status 1")
    assert time.monotonic() - started < 3
    assert answer["status"] == 200
    body = answer["response"] if isinstance(answer["response"], str) else str(answer["response"])
    assert "Ticket #1" in body and "open" in body
    stand.command("U0AGENT2", "C0HEALTH", "claim 1")
    assigned = stand.command("U0AGENT2", "C0HEALTH", "assign 1 <@U0AGENT1|asha>")
    assert "assigned to <@U0AGENT1>" in str(assigned["response"])
    stand.say("U0AGENT2", "C0HEALTH", "!close answered on the phone", root["ts"])

    def closed():
        reactions = (
            next(m for m in stand.messages("C0HEALTH") if m["ts"] == root["ts"]).get("reactions")
            or []
        )
        return any(r["name"] == "white_check_mark" for r in reactions)

    def told_privately():
        eph = [e for e in stand.slack_state()["ephemeral"] if e["user"] == "U0AGENT2"]
        return any("closed" in e["text"] for e in eph)

    wait_for("the closed mark on the root", closed)
    # The mark and the private answer are two calls; either may land first.
    wait_for("the private answer to !close", told_privately)
    assert "closed" in str(stand.command("U0AGENT2", "C0HEALTH", "status 1")["response"])


def test_unsigned_or_stale_slack_requests_get_401(stand: Stand, bot: Bot):
    body = b'{"type":"event_callback","event_id":"EvX","event":{"type":"message"}}'
    assert requests.post(bot.url("/slack/events"), data=body, timeout=10).status_code == 401
    old = str(int(time.time()) - 600)
    sig = (
        "v0="
        + hmac.new(
            TOKENS["SLACK_SIGNING_SECRET"].encode(), f"v0:{old}:".encode() + body, hashlib.sha256
        ).hexdigest()
    )
    stale = requests.post(
        bot.url("/slack/events"),
        data=body,
        headers={"X-Slack-Request-Timestamp": old, "X-Slack-Signature": sig},
        timeout=10,
    )
    assert stale.status_code == 401


def test_health_and_metrics(stand: Stand, bot: Bot):
    stand.tweet("citizen_asha", "@SevaHelp oxygen?")
    wait_for("a ticket", lambda: stand.roots("C0HEALTH"))

    def healthy():
        h = requests.get(bot.url("/healthz"), timeout=10)
        return h.status_code == 200 and h.json()["status"] == "ok" and h.json()

    h = wait_for("a healthy report", healthy)
    assert h["platforms"]["slack"]["connected"] is True
    assert h["poll_lag_seconds"] < 5
    metrics = requests.get(bot.url("/metrics"), timeout=10).text
    assert 'seva_tickets_total{department="health"} 1.0' in metrics
    for token in TOKENS.values():
        assert token not in bot.log()


def test_slack_429s_are_waited_out_and_each_root_lands_once(stand: Stand, tmp_path):
    stand._post("/slack/sandbox/config", {"rate_limit_per_channel": 2})
    bot = Bot(stand, tmp_path).start()  # unpaced: the bot runs into the limit at once
    ids = [stand.tweet(f"c{i}", f"@SevaHelp oxygen {i}")["id"] for i in range(8)]
    wait_for("all eight roots", lambda: len(stand.roots("C0HEALTH")) == 8, timeout=30)
    tweet_ids = [m["metadata"]["event_payload"]["tweet_id"] for m in stand.roots("C0HEALTH")]
    assert sorted(tweet_ids) == sorted(ids)
    assert "slack.api_failed error=chat.postMessage: rate limited" in bot.log()
    bot.kill()


def test_a_paced_backlog_in_one_channel_delays_neither_replies_nor_other_channels(
    stand: Stand, tmp_path
):
    import copy

    from tests.e2e.harness import CONFIG

    config = copy.deepcopy(CONFIG)
    config["slack"]["post_rate_per_channel"] = 1.0  # Slack's real pace
    bot = Bot(stand, tmp_path, config).start()
    first = stand.tweet("citizen_asha", "@SevaHelp oxygen at the district hospital?")
    root = root_for(stand, "C0HEALTH", first["id"])
    for i in range(15):  # fifteen seconds of roots queue up in #health
        stand.tweet(f"c{i}", f"@SevaHelp hospital bed {i}?")
    wait_for("the backlog to start", lambda: len(stand.roots("C0HEALTH")) >= 2)
    stand.say("U0AGENT1", "C0HEALTH", "Yes, open all night.", root["ts"])
    wait_for("the reply tweet", stand.bot_tweets)
    assert len(stand.roots("C0HEALTH")) < 16, "the reply waited for the backlog"
    other = stand.tweet("ravi_k", "@SevaHelp is the 5:40 train late?")
    root_for(stand, "C0TRANSPORT", other["id"])
    assert len(stand.roots("C0HEALTH")) < 16, "the other channel waited for the backlog"
    wait_for("the backlog to drain", lambda: len(stand.roots("C0HEALTH")) == 16, timeout=30)
    bot.kill()
