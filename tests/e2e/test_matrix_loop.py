"""The real `seva run` process with one department in a room on a real Synapse and one
on Slack (the stand-in): mention, reply, power levels, commands, restarts, encryption."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import pytest

from tests.e2e.harness import CONFIG, HANDLE, Bot, Stand, wait_for
from tests.synapse import Homeserver, MatrixUser

pytestmark = [pytest.mark.e2e, pytest.mark.synapse]


class Room:
    def __init__(self, hs: Homeserver, *, encrypted: bool = False) -> None:
        tag = uuid.uuid4().hex[:8]
        self.hs = hs
        self.admin = hs.register(f"admin{tag}")
        self.bot = hs.register(f"seva{tag}")
        self.agent = hs.register(f"agent{tag}")
        self.visitor = hs.register(f"visitor{tag}")
        self.id = hs.create_room(
            self.admin,
            invite=(self.bot, self.agent, self.visitor),
            power_levels={self.agent.user_id: 50, self.bot.user_id: 50},
            encrypted=encrypted,
        )
        hs.join(self.agent, self.id)
        hs.join(self.visitor, self.id)

    def events(self) -> list[dict[str, Any]]:
        return self.hs.messages(self.admin, self.id, limit=200)

    def by_bot(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e["sender"] == self.bot.user_id and e["type"] == "m.room.message"
        ]

    def root(self, ticket: int) -> dict[str, Any] | None:
        key = f"root:{ticket}"
        return next(
            (e for e in self.by_bot() if e["content"].get("org.sevabridge.key") == key), None
        )

    def in_thread(self, root_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.by_bot()
            if (e["content"].get("m.relates_to") or {}).get("event_id") == root_id
        ]

    def say(self, user: MatrixUser, text: str, thread: str | None = None) -> str:
        if thread:
            return self.hs.send_thread_reply(user, self.id, thread, text)
        return self.hs.send_text(user, self.id, text)


def mixed_config(room: Room) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    health = config["departments"][0]
    del health["slack_channel"]
    health["matrix_room"] = room.id
    health["agents"] = []  # anyone at or above matrix.min_power_level
    health["oncall"]["members"] = [room.agent.user_id]
    health["escalate_to"] = [room.admin.user_id]
    config["matrix"] = {"min_power_level": 50}
    return config


def matrix_env(hs: Homeserver, room: Room) -> dict[str, str]:
    return {
        "MATRIX_HOMESERVER": hs.base_url,
        "MATRIX_USER_ID": room.bot.user_id,
        "MATRIX_ACCESS_TOKEN": room.bot.access_token or "",
    }


@pytest.fixture
def room(synapse: Homeserver) -> Room:
    return Room(synapse)


@pytest.fixture
def mixed_bot(stand: Stand, synapse: Homeserver, room: Room, tmp_path):
    bot = Bot(stand, tmp_path, mixed_config(room), matrix_env(synapse, room)).start()
    yield bot
    bot.kill()


def test_mention_root_reply_and_confirmation_in_a_room(stand: Stand, room: Room, mixed_bot: Bot):
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen? <b>now</b> @room <a href='x'>x</a>")
    root = wait_for("the root in the room", lambda: room.root(1))
    content = root["content"]
    assert content["m.mentions"] == {"user_ids": [room.agent.user_id]}
    assert f'href="https://matrix.to/#/{room.agent.user_id}"' in content["formatted_body"]
    assert "<b>now</b>" not in content["formatted_body"]
    assert "&lt;b&gt;now&lt;/b&gt;" in content["formatted_body"]
    assert "@room" not in content["body"]
    assert f"https://x.com/citizen_asha/status/{asked['id']}" in content["body"]

    room.say(room.agent, "note: checking", root["event_id"])
    room.say(room.visitor, "I am below the power level", root["event_id"])
    answer = room.say(room.agent, "Yes, the oxygen desk is open.", root["event_id"])
    (reply,) = wait_for("the reply tweet", stand.bot_tweets)
    assert reply["in_reply_to_tweet_id"] == asked["id"]
    assert reply["text"] == "Yes, the oxygen desk is open."

    def confirmed():
        return [e for e in room.in_thread(root["event_id"]) if reply["id"] in e["content"]["body"]]

    (confirmation,) = wait_for("the confirmation in the thread", confirmed)
    # For clients without threads it replies to the latest message there, not the root.
    relates = confirmation["content"]["m.relates_to"]
    assert relates["event_id"] == root["event_id"]
    assert relates["m.in_reply_to"] == {"event_id": answer}
    time.sleep(0.5)
    assert len(stand.bot_tweets()) == 1


def test_commands_in_the_room_and_in_a_thread(stand: Stand, room: Room, mixed_bot: Bot):
    stand.tweet("citizen_asha", "@SevaHelp hospital beds?")
    root = wait_for("the root in the room", lambda: room.root(1))
    room.say(room.agent, "!ticket status 1")

    def notice(text: str):
        return lambda: [
            e
            for e in room.by_bot()
            if e["content"].get("msgtype") == "m.notice" and text in e["content"]["body"]
        ]

    (answer,) = wait_for("the status answer", notice("Ticket #1"))
    assert "open" in answer["content"]["body"]
    room.say(room.agent, "!close resolved by phone", root["event_id"])
    (closed,) = wait_for("the close answer", notice("closed"))
    assert (closed["content"].get("m.relates_to") or {}).get("event_id") == root["event_id"]
    assert stand.bot_tweets() == []


def test_saved_answers_and_answer_from_a_room(stand: Stand, room: Room, mixed_bot: Bot):
    """The saved answers are the same commands in a Matrix room: saved by an agent (a
    member below the power level may not), sent with `!answer` in a ticket's thread."""

    def notice(text: str):
        return lambda: [
            e
            for e in room.by_bot()
            if e["content"].get("msgtype") == "m.notice" and text in e["content"]["body"]
        ]

    room.say(room.visitor, "!ticket save beds Not from a visitor.")
    wait_for("the refusal", notice("nothing changed"))
    room.say(room.agent, "!ticket save beds Beds are free at the district hospital, ward 4.")
    wait_for("the saved answer", notice("Saved “beds”"))
    asked = stand.tweet("citizen_asha", "@SevaHelp hospital beds free?")
    root = wait_for("the root in the room", lambda: room.root(1))
    room.say(room.agent, "!answer beds", root["event_id"])
    (reply,) = wait_for("the saved answer on X", stand.bot_tweets)
    assert reply["in_reply_to_tweet_id"] == asked["id"]
    assert reply["text"] == "Beds are free at the district hospital, ward 4. (ref #1)"
    room.say(room.agent, "!answers")
    (listed,) = wait_for("the list", notice("Saved answers for Health and hospitals (1)"))
    assert "Not from a visitor" not in listed["content"]["body"]


def test_both_platforms_at_once(stand: Stand, room: Room, mixed_bot: Bot):
    stand.tweet("citizen_asha", "@SevaHelp oxygen?")
    stand.tweet("ravi_k", "@SevaHelp is the 5:40 train late?")
    wait_for("the Matrix root", lambda: room.root(1) or room.root(2))
    wait_for("the Slack root", lambda: stand.roots("C0TRANSPORT"))


def test_restart_neither_replays_nor_loses_room_events(
    stand: Stand, synapse: Homeserver, room: Room, tmp_path
):
    bot = Bot(stand, tmp_path, mixed_config(room), matrix_env(synapse, room)).start()
    asked = stand.tweet("citizen_asha", "@SevaHelp oxygen?")
    root = wait_for("the root", lambda: room.root(1))
    room.say(room.agent, "First answer.", root["event_id"])
    wait_for("the first reply", stand.bot_tweets)
    assert bot.stop() == 0
    room.say(room.agent, "Second answer, sent while the bot was down.", root["event_id"])
    bot.start()
    tweets = wait_for(
        "the second reply", lambda: len(stand.bot_tweets()) >= 2 and stand.bot_tweets()
    )
    time.sleep(1.0)
    texts = [t["text"] for t in stand.bot_tweets()]
    assert texts == ["First answer.", "Second answer, sent while the bot was down."]
    assert tweets[1]["in_reply_to_tweet_id"] == asked["id"]
    bot.kill()


def test_encrypted_room_is_refused_by_name(stand: Stand, synapse: Homeserver, tmp_path):
    room = Room(synapse, encrypted=True)
    bot = Bot(stand, tmp_path, mixed_config(room), matrix_env(synapse, room))
    proc = bot.spawn()
    assert proc.wait(60) == 2
    log = bot.log()
    assert room.id in log and "encrypt" in log.lower()
    assert HANDLE not in [t["username"] for t in stand.x_state()["tweets"]]


def test_check_online_asks_matrix_whoami(stand: Stand, synapse: Homeserver, room: Room, tmp_path):
    import subprocess

    import yaml

    from tests.e2e.harness import SEVA

    bot = Bot(stand, tmp_path, mixed_config(room), matrix_env(synapse, room))
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(mixed_config(room)))
    out = subprocess.run(
        [str(SEVA), "check", "--online"],
        cwd=tmp_path,
        env=bot.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"Matrix: OK, {room.bot.user_id}" in out.stdout
    assert f"Matrix: OK, room {room.id}: invited, and the bot joins it when it starts" in out.stdout
    # Once joined: joined, unencrypted, and a power level that lets it post and react.
    room.hs.join(room.bot, room.id)
    elsewhere = room.hs.create_room(room.admin)  # the bot was never invited there
    config = mixed_config(room)
    config["departments"][1] = {**config["departments"][0], "id": "other", "matrix_room": elsewhere}
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(config))
    joined = subprocess.run(
        [str(SEVA), "check", "--online"],
        cwd=tmp_path,
        env=bot.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"Matrix: OK, room {room.id}: joined, unencrypted, power level 50" in joined.stdout
    assert f"Matrix: FIX: room {elsewhere} is not joined: invite {room.bot.user_id}" in (
        joined.stderr
    )
    assert joined.returncode == 2 and "1 problem(s) found" in joined.stderr
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(mixed_config(room)))
    env = {**bot.env(), "MATRIX_ACCESS_TOKEN": "syt_not_a_real_token"}
    bad = subprocess.run(
        [str(SEVA), "check", "--online"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "Matrix: whoami failed" in bad.stderr


@pytest.fixture(scope="module")
def strict_synapse(tmp_path_factory):
    """A homeserver that rate-limits messages hard, to see M_LIMIT_EXCEEDED for real."""
    from tests.synapse import start_or_skip

    strict = {"per_second": 1, "burst_count": 2}
    hs = start_or_skip(tmp_path_factory.mktemp("strict-synapse"), {"rc_message": strict})
    yield hs
    hs.stop()


def test_m_limit_exceeded_is_waited_out_and_each_root_lands_once(
    stand: Stand, strict_synapse: Homeserver, tmp_path
):
    room = Room(strict_synapse)
    bot = Bot(stand, tmp_path, mixed_config(room), matrix_env(strict_synapse, room)).start()
    try:
        for i in range(8):
            stand.tweet(f"c{i}", f"@SevaHelp oxygen bed {i}?")

        def roots() -> list[int]:
            keys = [e["content"].get("org.sevabridge.key", "") for e in room.by_bot()]
            return sorted(int(k.split(":")[1]) for k in keys if k.startswith("root:"))

        wait_for("all eight roots", lambda: len(roots()) >= 8, timeout=60)
        time.sleep(1.0)
        assert roots() == list(range(1, 9)), "each root exactly once"
        log = (strict_synapse.directory / "homeserver.log").read_text()
        assert "429 - Too Many Requests (rc_message)" in log, "Synapse did limit the bot"
    finally:
        bot.kill()


def test_oncall_answers_in_the_room_and_an_override_is_handed_off_there(
    stand: Stand, room: Room, mixed_bot: Bot
):
    def notices(text: str) -> list[dict[str, Any]]:
        return [
            e
            for e in room.by_bot()
            if e["content"].get("msgtype") == "m.notice" and text in e["content"]["body"]
        ]

    room.say(room.visitor, "!ticket oncall health")  # anyone may ask who it is
    (who,) = wait_for("who is on call", lambda: notices("Health and hospitals:"))
    assert room.agent.user_id in who["content"]["body"]

    room.say(room.visitor, f"!ticket oncall set {room.admin.user_id} 2")  # below the level
    wait_for("the refusal", lambda: notices("Only Health and hospitals's agents"))
    room.say(room.agent, f"!ticket oncall set {room.admin.user_id} 2")
    wait_for("the override's answer", lambda: notices("is on call for Health and hospitals"))

    def handoffs() -> list[dict[str, Any]]:
        return [
            e
            for e in room.by_bot()
            if str(e["content"].get("org.sevabridge.key", "")).startswith("handoff:health:")
        ]

    (handoff,) = wait_for("the hand-off in the room", handoffs)
    assert handoff["content"]["body"].startswith("On call now for Health and hospitals:")
    assert room.admin.user_id in handoff["content"]["m.mentions"]["user_ids"]
    assert "override by" in handoff["content"]["body"]
