"""Socket Mode through the real `seva run` process: events, commands and acks over the WebSocket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.slack.model import Delivery
from tests.e2e.harness import Bot, Stand, wait_for

pytestmark = pytest.mark.e2e

APP_TOKEN = "xapp-1-A0SEVA-1-e2e-app-token-0001"


@pytest.fixture
def stand() -> Iterator[Stand]:
    s = Stand(app_token=APP_TOKEN).start()
    yield s
    s.stop()


@pytest.fixture
def bot(stand: Stand, tmp_path) -> Iterator[Bot]:
    b = Bot(stand, tmp_path, extra_env={"SLACK_APP_TOKEN": APP_TOKEN}).start()
    wait_for("the bot's socket", lambda: stand.slack_state()["socket_connections"] == 1)
    yield b
    b.kill()


def deliveries(stand: Stand) -> list[Delivery]:
    """What the stand-in sent the bot, read on the stand-in's own loop."""

    async def read() -> list[Delivery]:
        return list(stand.slack.deliveries)

    return stand._run(read())


def root_for(stand: Stand, tweet_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in stand.roots("C0HEALTH")
                if m["metadata"]["event_payload"]["tweet_id"] == tweet_id
            ),
            None,
        )

    return wait_for(f"the thread root of tweet {tweet_id}", probe)


def test_thread_reply_over_the_socket_becomes_one_tweet(stand: Stand, bot: Bot) -> None:
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen at the district hospital?")
    root = root_for(stand, asked["id"])
    assert root["metadata"]["event_payload"]["ticket"] == 1

    sent = stand.say("U0AGENT1", "C0HEALTH", "Yes: call 1075, counter 3.", root["ts"])
    assert sent["status"] == 200  # acked on the socket; by HTTP the bot would answer 404
    (reply,) = wait_for("the reply tweet", stand.bot_tweets)
    assert reply["in_reply_to_tweet_id"] == asked["id"]
    assert reply["text"] == "Yes: call 1075, counter 3."

    def confirmed() -> list[dict[str, Any]]:
        return [m for m in stand.thread("C0HEALTH", root["ts"]) if reply["id"] in m["text"]]

    wait_for("the confirmation in the thread", confirmed)
    # Slack's retry of the same event, over the socket too: recognised, not tweeted again.
    assert stand.redeliver(sent["event_id"])["status"] == 200
    wait_for(
        "the duplicate to be recognised",
        lambda: f"slack.event_duplicate event_id={sent['event_id']}" in bot.log(),
    )
    assert len(stand.bot_tweets()) == 1

    sent_to_bot = deliveries(stand)
    assert sent_to_bot and {d.transport for d in sent_to_bot} == {"socket"}
    ours = [d for d in sent_to_bot if d.event_id == sent["event_id"]]
    assert [(d.retry_num, d.status) for d in ours] == [(0, 200), (1, 200)]
    config = requests.post(stand.url + "/slack/sandbox/config", json={}, timeout=10).json()
    assert config["events_url"] == bot.url("/slack/events")  # set, and still not used


def test_slash_command_is_answered_through_the_ack(stand: Stand, bot: Bot) -> None:
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen?")
    root_for(stand, asked["id"])
    answer = stand.command("U0AGENT2", "C0HEALTH", "status 1")
    assert answer["status"] == 200
    assert "Ticket #1" in str(answer["response"])
    eph = [e for e in stand.slack_state()["ephemeral"] if e["user"] == "U0AGENT2"]
    assert any("Ticket #1" in e["text"] for e in eph)
    assert [d.transport for d in deliveries(stand) if d.kind == "command"] == ["socket"]


def test_no_events_endpoint_in_socket_mode(stand: Stand, bot: Bot) -> None:
    body = b'{"type":"event_callback","event_id":"EvX","event":{"type":"message"}}'
    assert requests.post(bot.url("/slack/events"), data=body, timeout=10).status_code == 404
    assert requests.get(bot.url("/healthz"), timeout=10).json()["platforms"]["slack"]["mode"] == (
        "socket"
    )


def test_bot_reconnects_when_slack_asks(stand: Stand, bot: Bot) -> None:
    opened = stand.slack_state()["socket_connections_opened"]
    asked_to = requests.post(
        stand.url + "/slack/sandbox/socket/disconnect",
        json={"reason": "refresh_requested"},
        timeout=10,
    ).json()
    assert asked_to["sockets"] == 1

    def reconnected() -> bool:
        state = stand.slack_state()
        return state["socket_connections_opened"] > opened and state["socket_connections"] == 1

    wait_for("the bot to reconnect", reconnected)
    asked = stand.tweet("citizen_asha", "@SevaHelp is the hospital open?")
    root = root_for(stand, asked["id"])
    assert stand.say("U0AGENT1", "C0HEALTH", "Yes, 24x7.", root["ts"])["status"] == 200
    (reply,) = wait_for("the reply tweet", stand.bot_tweets)
    assert reply["text"] == "Yes, 24x7."


def test_a_refused_app_token_stops_the_start(stand: Stand, tmp_path) -> None:
    wrong = "xapp-1-A0SEVA-1-not-the-app-token"
    b = Bot(stand, tmp_path, extra_env={"SLACK_APP_TOKEN": wrong})
    assert b.spawn().wait(30) == 2  # refused at once, not retried forever
    log = b.log()
    assert "Slack refused SLACK_APP_TOKEN for Socket Mode (invalid_auth)" in log
    assert "seva.started" not in log and wrong not in log
