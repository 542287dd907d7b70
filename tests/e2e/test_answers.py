"""Common questions answered once, through the real `seva run` process against the
stand-ins: "Similar answered" on new roots, `similar`, saved answers, `answer`, `reuse`
(with a kill -9 in the middle) and `seva answers --html/--json`.

One bot serves the module's tests (each uses its own citizens and tickets); the test
with the kill has its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Bot, Stand, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def shared_bot(stand: Stand, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    bot = Bot(stand, tmp_path_factory.mktemp("answers")).start()
    Bot.live.discard(bot)  # outlives each test, not the module
    yield bot
    bot.kill()


def root_of(stand: Stand, channel: str, tweet_id: str) -> dict:
    def probe() -> dict | None:
        return next(
            (
                m
                for m in stand.roots(channel)
                if m["metadata"]["event_payload"]["tweet_id"] == tweet_id
            ),
            None,
        )

    return wait_for(f"the root of tweet {tweet_id}", probe)


def replies_to(stand: Stand, tweet_id: str) -> list[dict]:
    return [t for t in stand.bot_tweets() if t["in_reply_to_tweet_id"] == tweet_id]


def response_text(answer: dict) -> str:
    body = answer["response"]
    return body if isinstance(body, str) else str(body)


def test_a_new_root_suggests_an_earlier_answer_and_similar_lists_it(stand: Stand, shared_bot: Bot):
    first = stand.tweet("citizen_ravi", "@SevaHelp oxygen cylinder refill in Lucknow tonight?")
    root = root_of(stand, "C0HEALTH", first["id"])
    stand.say(
        "U0AGENT1",
        "C0HEALTH",
        "The Aliganj refill centre in Lucknow is open all night; call 1075 first.",
        root["ts"],
    )
    wait_for("the answer on X", lambda: replies_to(stand, first["id"]))
    number = root["metadata"]["event_payload"]["ticket"]

    again = stand.tweet(
        "citizen_sita", "@SevaHelp where can I refill an oxygen cylinder in Lucknow?"
    )
    text = root_of(stand, "C0HEALTH", again["id"])["text"]
    assert f"*Similar answered:* #{number}\n" in text
    assert f"#{number}: “The Aliganj refill centre in Lucknow is open all night" in text
    # The on-call member is still mentioned, below the suggestions.
    assert text.index("Similar answered") < text.index("<@U0AGENT")

    listed = response_text(stand.command("U0AGENT2", "C0HEALTH", f"similar {number + 1}"))
    assert f"#{number} · open, answered · health" in listed
