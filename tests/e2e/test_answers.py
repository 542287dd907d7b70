"""Common questions answered once, through the real `seva run` process against the
stand-ins: "Similar answered" on new roots, `similar`, saved answers, `answer`, `reuse`
(with a kill -9 in the middle) and `seva answers --html/--json`.

One bot serves the module's tests (each uses its own citizens and tickets); the test
with the kill has its own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.harness import SEVA, Bot, Stand, wait_for

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


def test_saved_answers_from_slack_and_answer_in_a_thread(stand: Stand, shared_bot: Bot):
    saved = stand.command(
        "U0AGENT2",
        "C0HEALTH",
        "save cowin Book a vaccine slot on cowin.gov.in; centres take walk-ins 9 to 5.",
    )
    assert "Saved “cowin” for Health and hospitals" in response_text(saved)
    listed = response_text(stand.command("U0AGENT1", "C0HEALTH", "answers"))
    assert "cowin" in listed and "Book a vaccine slot" in listed
    refused = stand.command("U0VISITOR", "C0HEALTH", "forget cowin")
    assert "nothing changed" in response_text(refused)

    asked = [
        stand.tweet(f"citizen_v{i}", f"@SevaHelp how do I book a vaccine slot {i}?")
        for i in range(2)
    ]
    for tweet in asked:
        root = root_of(stand, "C0HEALTH", tweet["id"])
        stand.say("U0AGENT1", "C0HEALTH", "!answer cowin", root["ts"])
    sent = [
        wait_for("the saved answer on X", lambda t=t: replies_to(stand, t["id"])) for t in asked
    ]
    texts = [s[0]["text"] for s in sent]
    numbers = [
        root_of(stand, "C0HEALTH", t["id"])["metadata"]["event_payload"]["ticket"] for t in asked
    ]
    assert texts == [
        f"Book a vaccine slot on cowin.gov.in; centres take walk-ins 9 to 5. (ref #{n})"
        for n in numbers
    ]
    forgot = response_text(stand.command("U0AGENT2", "C0HEALTH", "forget cowin"))
    assert "Forgot “cowin”" in forgot
    assert "No saved answers" in response_text(stand.command("U0AGENT1", "C0HEALTH", "answers"))


def test_reuse_to_many_tickets_survives_a_kill_9_in_the_middle(tmp_path):
    """One answer to five tickets; X takes two tweets but the bot never hears so, refuses
    two more with a 503, and the bot is killed right then. After the restart each ticket
    has its reply exactly once, each text distinct, and repeating the command adds none."""
    stand = Stand().start()
    try:
        bot = Bot(stand, tmp_path).start()
        asked = [
            stand.tweet(f"citizen_r{i}", f"@SevaHelp is the district hospital OPD open Sunday {i}?")
            for i in range(6)
        ]
        roots = [root_of(stand, "C0HEALTH", t["id"]) for t in asked]
        numbers = [r["metadata"]["event_payload"]["ticket"] for r in roots]
        stand.say(
            "U0AGENT1", "C0HEALTH", "Yes: the OPD runs 9 am to 1 pm on Sundays.", roots[0]["ts"]
        )
        wait_for("the first answer on X", lambda: replies_to(stand, asked[0]["id"]))

        stand.fault(method="POST", path_prefix="/2/tweets", status=503, times=2, after_commit=True)
        stand.fault(method="POST", path_prefix="/2/tweets", status=503, times=2)
        targets = " ".join(str(n) for n in numbers[1:])
        said = response_text(stand.command("U0AGENT1", "C0HEALTH", f"reuse {numbers[0]} {targets}"))
        assert said.count("tweeting") == 5

        def reused() -> list[dict]:
            return [
                t for t in stand.bot_tweets() if t["text"].endswith(")") and "(ref #" in t["text"]
            ]

        wait_for("X to take the first reused tweets", lambda: len(reused()) >= 2)
        bot.kill()
        assert len(reused()) < 5, "the kill landed before every reply went out"

        bot.start()
        wait_for("every reused reply", lambda: len(reused()) >= 5, timeout=40)
        for root in roots[1:]:

            def confirmed(root: dict = root) -> list[dict]:
                return [m for m in stand.thread("C0HEALTH", root["ts"]) if "Tweeted" in m["text"]]

            wait_for("each thread's confirmation", confirmed)
        again = response_text(
            stand.command("U0AGENT1", "C0HEALTH", f"reuse {numbers[0]} {targets}")
        )
        assert again.count("had it already") == 5
        for tweet, number in zip(asked[1:], numbers[1:], strict=True):
            (reply,) = replies_to(stand, tweet["id"])
            assert reply["text"] == f"Yes: the OPD runs 9 am to 1 pm on Sundays. (ref #{number})"
        assert len(reused()) == 5
        bot.kill()
    finally:
        stand.stop()


def test_the_public_page_holds_public_questions_and_answers_only(
    stand: Stand, shared_bot: Bot, tmp_path
):
    stand.command("U0AGENT1", "C0HEALTH", "save visiting Visiting hours are 4 pm to 7 pm.")
    nasty = stand.tweet(
        "citizen_page", '@SevaHelp is the <script>alert("x")</script> ward & ICU open?'
    )
    root = root_of(stand, "C0HEALTH", nasty["id"])
    stand.say("U0AGENT1", "C0HEALTH", "note: internal — ask the ICU desk first", root["ts"])
    stand.say("U0AGENT1", "C0HEALTH", "Yes, both are open <24x7> & free.", root["ts"])
    wait_for("the answer on X", lambda: replies_to(stand, nasty["id"]))
    private = stand.tweet("citizen_phone", "@SevaHelp call me on 98765 43210 about oxygen")
    proot = root_of(stand, "C0HEALTH", private["id"])
    stand.say("U0AGENT1", "C0HEALTH", "We will call you back today.", proot["ts"])
    wait_for("the second answer on X", lambda: replies_to(stand, private["id"]))
    wait_for(
        "both answers recorded",
        lambda: "Tweeted" in str(stand.thread("C0HEALTH", proot["ts"])),
    )

    html, data = tmp_path / "site" / "answers.html", tmp_path / "answers.json"
    done = subprocess.run(
        [
            str(SEVA),
            "answers",
            "--html",
            str(html),
            "--json",
            str(data),
            "--config",
            str(shared_bot.config_path),
            "--title",
            "Health desk answers",
        ],
        cwd=shared_bot.workdir,
        env=shared_bot.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "left out for personal data" in done.stdout
    page = html.read_text()
    assert "<title>Health desk answers</title>" in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; ward &amp; ICU open?" in page
    assert "<script" not in page.replace("&lt;script", "")
    assert "Yes, both are open &lt;24x7&gt; &amp; free." in page
    assert f"/status/{nasty['id']}" in page
    reply_id = replies_to(stand, nasty["id"])[0]["id"]
    assert f"https://x.com/i/status/{reply_id}" in page
    assert "Visiting hours are 4 pm to 7 pm." in page
    for internal in ("ask the ICU desk", "U0AGENT1", "note:", "98765", "citizen_phone"):
        assert internal not in page
    assert "http" not in page.replace("https://x.com/", "")  # no external asset of any kind
    parsed = json.loads(data.read_text())
    question = next(q for q in parsed["questions"] if "ICU" in q["question"])
    assert question["answers"][0]["text"] == "Yes, both are open <24x7> & free."
    assert question["answers"][0]["tweets"][0]["url"] == f"https://x.com/i/status/{reply_id}"
    assert parsed["withheld"] >= 1
    assert {"department", "name", "text", "updated_at"} == set(parsed["saved_answers"][0])
