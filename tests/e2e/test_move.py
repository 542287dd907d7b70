"""`move N DEPT` through the real `seva run` process: Slack to Slack against the Slack
stand-in (with a kill -9 right after the move), and Slack to Matrix and back on a real
Synapse (SPEC section 5)."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest

from tests.e2e.harness import CONFIG, Bot, Stand, wait_for
from tests.e2e.test_matrix_loop import Room, matrix_env
from tests.synapse import Homeserver

pytestmark = pytest.mark.e2e

DIRECT = copy.deepcopy(CONFIG)
DIRECT["departments"][1]["reply_mode"] = "direct"  # transport: its agent's reply goes out


def root_of(stand: Stand, channel: str, key: str) -> dict[str, Any]:
    def probe():
        return next(
            (m for m in stand.roots(channel) if m["metadata"]["event_payload"]["key"] == key),
            None,
        )

    return wait_for(f"the root {key} in {channel}", probe)


def in_thread(stand: Stand, channel: str, root_ts: str, text: str) -> list[dict[str, Any]]:
    return [m for m in stand.thread(channel, root_ts) if text in m["text"]]


def test_slack_to_slack_through_a_kill_9(stand: Stand, tmp_path):
    bot = Bot(stand, tmp_path, DIRECT).start()
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen cylinder allowed on the train?")
    old = root_of(stand, "C0HEALTH", "root:1")
    stand.say("U0AGENT1", "C0HEALTH", "!move transport", old["ts"])
    wait_for(
        "the move's answer",
        lambda: [e for e in stand.ephemerals("U0AGENT1") if "moved to Trains" in e["text"]],
    )
    bot.kill()  # kill -9 right after the move was stored: nothing lost, nothing doubled
    bot.start()

    new = root_of(stand, "C0TRANSPORT", "moved:1:1")
    assert "Moved here from Health and hospitals by <@U0AGENT1>" in new["text"]
    link = re.search(r"<(https://[^|>]+)\|earlier thread>", new["text"])
    assert link and link.group(1).endswith(f"/archives/C0HEALTH/p{old['ts'].replace('.', '')}")
    assert "oxygen cylinder allowed on the train?" in new["text"]
    wait_for("the old thread told", lambda: in_thread(stand, "C0HEALTH", old["ts"], "Moved to"))

    # The old thread no longer tweets, and says so only to the sender.
    stand.say("U0AGENT1", "C0HEALTH", "You may carry one cylinder.", old["ts"])
    wait_for(
        "the private notice",
        lambda: [e for e in stand.ephemerals("U0AGENT1") if "stayed internal" in e["text"]],
    )
    # The citizen's follow-up lands in the new thread; the new department answers there.
    stand.tweet("citizen_asha", "@SevaHelp and a wheelchair?", asked["id"])
    wait_for("the follow-up", lambda: in_thread(stand, "C0TRANSPORT", new["ts"], "wheelchair"))
    stand.say("U0TRANSPORT", "C0TRANSPORT", "Both are fine, tell the guard.", new["ts"])
    (reply,) = wait_for("the reply tweet", stand.bot_tweets)
    assert reply["text"] == "Both are fine, tell the guard."
    time.sleep(0.5)  # several poll and delivery cycles: nothing more may go out
    assert [t["text"] for t in stand.bot_tweets()] == ["Both are fine, tell the guard."]
    assert len(stand.roots("C0TRANSPORT")) == 1
    assert len(in_thread(stand, "C0HEALTH", old["ts"], "Moved to")) == 1
    status = stand.command("U0AGENT1", "C0HEALTH", "status 1")["response"]["text"]
    assert "Trains and buses" in status
    bot.kill()


@pytest.mark.synapse
def test_slack_to_matrix_and_matrix_to_slack(stand: Stand, synapse: Homeserver, tmp_path):
    room = Room(synapse)
    config = copy.deepcopy(DIRECT)
    config["departments"].append(
        {
            "id": "police",
            "name": "Police",
            "matrix_room": room.id,
            "keywords": ["theft"],
            "oncall": {
                "members": [room.agent.user_id],
                "shift_hours": 24 * 365 * 100,  # one shift: the on-call never changes
                "starts": "2020-01-01T00:00:00+05:30",
            },
        }
    )
    config["matrix"] = {"min_power_level": 50}
    bot = Bot(stand, tmp_path, config, matrix_env(synapse, room)).start()
    asked = stand.tweet("ravi_k", "@SevaHelp my bag was taken on the bus")
    slack_root = root_of(stand, "C0TRANSPORT", "root:1")
    moved = stand.command("U0TRANSPORT", "C0TRANSPORT", "move 1 police")["response"]["text"]
    assert "moved to Police" in moved

    # Slack -> Matrix: a new root in the room, pinging its on-call member, linking back.
    def room_root(key: str):
        return lambda: next(
            (e for e in room.by_bot() if e["content"].get("org.sevabridge.key") == key), None
        )

    in_room = wait_for("the root in the room", room_root("moved:1:1"))["content"]
    assert "Moved here from Trains and buses by" in in_room["body"]
    assert in_room["m.mentions"] == {"user_ids": [room.agent.user_id]}
    expected = f"/archives/C0TRANSPORT/p{slack_root['ts'].replace('.', '')}"
    assert re.search(rf'href="https://[^"]+{re.escape(expected)}"', in_room["formatted_body"])
    wait_for("Slack told", lambda: in_thread(stand, "C0TRANSPORT", slack_root["ts"], "Police"))

    # The room's agent answers: the reply goes out; the Slack thread no longer tweets.
    root_event = wait_for("the room root", room_root("moved:1:1"))["event_id"]
    stand.say("U0TRANSPORT", "C0TRANSPORT", "Check lost and found.", slack_root["ts"])
    room.say(room.agent, "Please file an e-FIR, we will call you.", root_event)
    (reply,) = wait_for("the reply tweet", stand.bot_tweets)
    assert reply["text"] == "Please file an e-FIR, we will call you."
    assert reply["in_reply_to_tweet_id"] == asked["id"]

    # Matrix -> Slack: back to transport from the room's thread.
    room.say(room.agent, "!move transport", root_event)
    back = root_of(stand, "C0TRANSPORT", "moved:1:2")
    assert "Moved here from Police by" in back["text"]
    assert f"https://matrix.to/#/{room.id}/{root_event}" in back["text"]

    def room_told():
        return [
            e
            for e in room.in_thread(root_event)
            if e["content"].get("org.sevabridge.key") == "moved-away:1:2"
        ]

    (told,) = wait_for("the room's thread told", room_told)
    assert "Moved to Trains and buses" in told["content"]["body"]
    room.say(room.agent, "One more thing for the citizen.", root_event)
    wait_for(
        "the room agent told",
        lambda: [
            e for e in room.in_thread(root_event) if "stayed internal" in e["content"]["body"]
        ],
    )
    time.sleep(0.5)
    assert len(stand.bot_tweets()) == 1
    bot.kill()
