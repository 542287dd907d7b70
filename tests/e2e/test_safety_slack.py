"""Public-post safety through the real `seva run` process on Slack (SPEC section 5):
internal notes fail closed, risky replies are held, personal data is flagged, only the
department's people change its tickets, and `retract` takes a reply back.

One stand-in and one bot process serve the whole module; each test opens its own
ticket with its own citizen, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import CONFIG, Bot, Stand, wait_for

pytestmark = pytest.mark.e2e

HEALTH, TRANSPORT = "C0HEALTH", "C0TRANSPORT"


def safety_config() -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    config["safety"] = {"official_numbers": ["1075"], "max_reply_parts": 2}
    config["supervisors"] = ["U0LEAD"]
    return config


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bot(stand: Stand, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    b = Bot(stand, tmp_path_factory.mktemp("safety-slack"), safety_config()).start()
    yield b
    b.kill()


@pytest.fixture(autouse=True)
def no_bot_outlives_its_test() -> Iterator[None]:
    """The module's bot lives for the whole module (the shared fixture kills it)."""
    yield


def open_ticket(stand: Stand, citizen: str, text: str, channel: str = HEALTH) -> dict[str, Any]:
    """Tweets as `citizen` and waits for the thread root; the root's message."""
    asked = stand.tweet(citizen, text)

    def probe() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in stand.roots(channel)
                if m["metadata"]["event_payload"]["tweet_id"] == asked["id"]
            ),
            None,
        )

    root = wait_for(f"the root of {citizen}'s tweet", probe)
    root["asked"] = asked
    return root


def replies_to(stand: Stand, tweet_id: str) -> list[dict[str, Any]]:
    return [t for t in stand.bot_tweets() if t["in_reply_to_tweet_id"] == tweet_id]


def test_notes_in_any_form_stay_internal(stand: Stand, bot: Bot):
    root = open_ticket(stand, "citizen_notes", "@SevaHelp oxygen cylinders at the hospital?")
    tricky = [
        "NOTE : checking with the desk",
        "*note:* their cousin called too",
        "Note： full-width colon",
        "note - waiting for the desk",
        "नोट: कल फोन करें",
        "> private: quoted from the call",
        "_internal_ – draft, do not send",
    ]
    before = bot.log().count("reply.internal_note")
    for text in tricky:
        stand.say("U0AGENT1", HEALTH, text, root["ts"])
    wait_for(
        "every note to be read as one",
        lambda: bot.log().count("reply.internal_note") >= before + len(tricky),
    )
    stand.say("U0AGENT1", HEALTH, "Cylinders are at counter 2.", root["ts"])
    (reply,) = wait_for("the one real reply", lambda: replies_to(stand, root["asked"]["id"]))
    assert reply["text"] == "Cylinders are at counter 2."
