"""Secrets never leave the process (SPEC section 4, issue 12): the real `seva run` with
distinctive secrets, through a whole scenario and through every kind of refusal (X
refusing its keys, Slack refusing its token, Matrix refusing a password), and every
output searched for them: stdout and stderr, every HTTP answer it gave, what it posted
to Slack and X, and a dump of its database.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import sqlite3
import time
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.harness import CONFIG, Bot, Stand, wait_for
from tests.synapse import Homeserver

pytestmark = pytest.mark.e2e


def distinctive() -> dict[str, str]:
    """Secrets no other output could contain by chance, each in the shape it has."""
    tag = uuid.uuid4().hex
    return {
        "X_BEARER_TOKEN": f"AAAA-bearer-{tag}",
        "X_API_KEY": f"apikey{tag}",
        "X_API_SECRET": f"apisecret{tag}",
        "X_ACCESS_TOKEN": f"1700-access-{tag}",
        "X_ACCESS_TOKEN_SECRET": f"accesssecret{tag}",
        "SLACK_BOT_TOKEN": f"xoxb-1-{tag}",
        "SLACK_SIGNING_SECRET": f"signing{tag}",
    }


def give_the_stand_ins(stand: Stand, secrets: dict[str, str]) -> None:
    """The stand-ins accept these secrets (and no others) from now on."""
    x = stand.x
    x.bearer_token, x.api_key, x.api_secret = (
        secrets["X_BEARER_TOKEN"],
        secrets["X_API_KEY"],
        secrets["X_API_SECRET"],
    )
    x.access_token, x.access_token_secret = (
        secrets["X_ACCESS_TOKEN"],
        secrets["X_ACCESS_TOKEN_SECRET"],
    )
    stand.slack.bot_token = secrets["SLACK_BOT_TOKEN"]
    stand.slack.signing_secret = secrets["SLACK_SIGNING_SECRET"]


def database_dump(bot: Bot) -> str:
    with sqlite3.connect(bot.db_url.removeprefix("sqlite:///")) as db:
        return "\n".join(db.iterdump())


def leaks(secrets: dict[str, str], outputs: dict[str, str]) -> list[str]:
    """Which secret (by name) appears in which output (by name); [] when none does."""
    return [
        f"{name} in {where}"
        for name, secret in secrets.items()
        for where, text in outputs.items()
        if secret in text
    ]


def signed(secret: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + sig}


def test_a_whole_scenario_shows_no_secret_anywhere(stand: Stand, tmp_path):
    secrets = distinctive()
    give_the_stand_ins(stand, secrets)
    config = copy.deepcopy(CONFIG)
    config["safety"] = {"max_reply_parts": 1}
    bot = Bot(stand, tmp_path, config, secrets).start()
    answers: dict[str, str] = {}

    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen? my number is 98765 43210")
    root = wait_for("the root", lambda: stand.roots("C0HEALTH"))[0]
    stand.say("U0AGENT1", "C0HEALTH", "Call 1075, the desk is open.", root["ts"])
    wait_for("the reply", lambda: [t for t in stand.bot_tweets() if "1075" in t["text"]])
    answers["status"] = str(stand.command("U0AGENT1", "C0HEALTH", "status 1"))
    answers["close"] = str(stand.command("U0VISITOR", "C0HEALTH", "close 1"))
    stand.say("U0AGENT1", "C0HEALTH", "!retract", root["ts"])
    wait_for("the retraction", lambda: "reply.retracted" in bot.log())
    body = b'{"type":"event_callback","event_id":"EvS","event":{"type":"message"}}'
    for name, headers in (
        ("unsigned", {}),
        ("wrongly signed", signed("not-the-secret", body)),
        ("signed", signed(secrets["SLACK_SIGNING_SECRET"], body)),
    ):
        r = requests.post(bot.url("/slack/events"), data=body, headers=headers, timeout=10)
        answers[f"/slack/events {name}"] = f"{r.status_code} {r.headers} {r.text}"
    for path in ("/healthz", "/metrics"):
        r = requests.get(bot.url(path), timeout=10)
        answers[path] = f"{r.status_code} {r.headers} {r.text}"
    bot.stop()

    outputs = {
        "stdout and stderr": bot.log(),
        "the database": database_dump(bot),
        "what it posted to Slack": str(stand.slack_state()),
        "what it posted to X": str(stand.x_state()),
        **answers,
    }
    assert "reply.retracted" in outputs["stdout and stderr"]  # the scenario did run
    assert asked["id"] in outputs["the database"]
    assert leaks(secrets, outputs) == []


def test_refused_credentials_are_reported_without_the_credentials(stand: Stand, tmp_path):
    accepted, offered = distinctive(), distinctive()
    give_the_stand_ins(stand, accepted)
    # X refuses the keys it is offered: the bot runs on, and says so in /healthz.
    x_refused = {**offered, **{k: v for k, v in accepted.items() if k.startswith("SLACK_")}}
    (tmp_path / "x").mkdir()
    bot = Bot(stand, tmp_path / "x", None, x_refused).start()
    health = wait_for(
        "X to show as refused",
        lambda: (
            (h := requests.get(bot.url("/healthz"), timeout=10).json())["platforms"]["x"]["ok"]
            is False
            and h
        ),
        timeout=30,
    )
    metrics = requests.get(bot.url("/metrics"), timeout=10).text
    bot.stop()
    outputs = {"stdout and stderr": bot.log(), "/healthz": str(health), "/metrics": metrics}
    assert "401" in outputs["stdout and stderr"]  # the refusal is reported ...
    assert leaks(offered, outputs) == []  # ... without what was refused

    # Slack refuses the bot token it is offered: the bot stops with exit code 2.
    slack_refused = {**accepted, "SLACK_BOT_TOKEN": offered["SLACK_BOT_TOKEN"]}
    (tmp_path / "slack").mkdir()
    bot = Bot(stand, tmp_path / "slack", None, slack_refused)
    assert bot.spawn().wait(60) == 2
    assert "SLACK_BOT_TOKEN" in bot.log() and "invalid_auth" in bot.log()
    assert leaks({"SLACK_BOT_TOKEN": offered["SLACK_BOT_TOKEN"]}, {"output": bot.log()}) == []


@pytest.mark.synapse
def test_a_refused_matrix_password_is_reported_without_it(
    stand: Stand, synapse: Homeserver, tmp_path
):
    from tests.e2e.test_matrix_loop import Room, mixed_config

    room = Room(synapse)
    password = f"pw-{uuid.uuid4().hex}"
    env: dict[str, Any] = {
        "MATRIX_HOMESERVER": synapse.base_url,
        "MATRIX_USER_ID": room.bot.user_id,
        "MATRIX_PASSWORD": password,
    }
    bot = Bot(stand, tmp_path, mixed_config(room), env)
    assert bot.spawn().wait(60) == 2
    assert "could not log in" in bot.log() and "Invalid username or password" in bot.log()
    assert password not in bot.log()
