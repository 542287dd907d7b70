"""The sandbox's fixed identities, and the short scripted scenario `make demo` plays.

The scenario drives only the stand-ins' control APIs over HTTP, as a person at the console
would, and waits (polling, with a deadline) for the bridge to do its part, so the whole loop
is visible within seconds of starting the demo:

    citizen tweets → ticket thread in #health → internal note → public answer tweeted and
    confirmed → a transport question lands in #transport → the citizen's follow-up lands in
    the same #health thread → an urgent query about someone who fainted on a train lands in
    #transport marked URGENT → the transport agent moves it to #health with `!move health`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import aiohttp

# --- the sandbox's identities (the stand-ins and the built-in config use these) -------

HANDLE: Final = "SevaHelp"
HEALTH_CHANNEL: Final = "C0HEALTH"
TRANSPORT_CHANNEL: Final = "C0TRANSPORT"
CHANNELS: Final[tuple[tuple[str, str], ...]] = (
    (HEALTH_CHANNEL, "health"),
    (TRANSPORT_CHANNEL, "transport"),
)
# (Slack user id, username, real name)
USERS: Final[tuple[tuple[str, str, str], ...]] = (
    ("U0AGENT1", "asha.agent", "Asha (Health desk)"),
    ("U0AGENT2", "vikram.agent", "Vikram (Health desk)"),
    ("U0LEAD", "meera.lead", "Meera (Lead)"),
    ("U0TRANSPORT", "tariq.agent", "Tariq (Transport desk)"),
    ("U0VISITOR", "guest", "A guest (not an agent)"),
)
HEALTH_AGENT: Final = "U0AGENT1"
CITIZEN: Final = "citizen_asha"
SECOND_CITIZEN: Final = "ravi_k"
CONSOLE_URL: Final = "http://127.0.0.1:8000"

TICKET_EVENT: Final = "seva_ticket"
POLL_INTERVAL: Final = 0.25

QUESTION: Final = (
    "@SevaHelp Is oxygen available at the district hospital? My father needs it tonight. #covid19"
)
NOTE: Final = "note: checking with the oxygen desk"
ANSWER: Final = (
    "Yes: the district hospital oxygen desk is open 24x7, call 1075 or go to counter 3. "
    "Please carry the prescription."
)
TRANSPORT_QUESTION: Final = (
    "@SevaHelp the 5:40 local train from Thane is cancelled again, any replacement bus?"
)
FOLLOW_UP: Final = "@SevaHelp thank you! is a prescription copy ok?"
URGENT_QUESTION: Final = (
    "@SevaHelp a man fainted on the local train at Thane platform 2, he is not waking up"
)
TRANSPORT_AGENT: Final = "U0TRANSPORT"

T = TypeVar("T")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


class ScenarioError(RuntimeError):
    """A step of the scenario did not complete; the message says which and why."""


class _Console:
    """The two stand-ins' control APIs, as the console uses them."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._http = session
        self._url = url.rstrip("/")

    async def _call(self, step: str, method: str, path: str, body: Any = None) -> Any:
        async with self._http.request(method, self._url + path, json=body) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            if resp.status >= 400 or (isinstance(data, dict) and data.get("ok") is False):
                error = data.get("error") if isinstance(data, dict) else None
                raise ScenarioError(
                    f"step {step}: {method} {path} failed: HTTP {resp.status} {error or ''}".strip()
                )
            return data

    async def x_state(self, step: str) -> dict[str, Any]:
        return dict(await self._call(step, "GET", "/x/sandbox/state"))

    async def slack_state(self, step: str) -> dict[str, Any]:
        return dict(await self._call(step, "GET", "/slack/sandbox/state"))

    async def tweet(
        self, step: str, username: str, text: str, in_reply_to: str | None = None
    ) -> str:
        body: dict[str, Any] = {"username": username, "text": text}
        if in_reply_to is not None:
            body["in_reply_to_tweet_id"] = in_reply_to
        data = await self._call(step, "POST", "/x/sandbox/tweets", body)
        return str(data["data"]["id"])

    async def post(
        self, step: str, user: str, channel: str, text: str, thread_ts: str | None = None
    ) -> str:
        body: dict[str, Any] = {"user": user, "channel": channel, "text": text}
        if thread_ts is not None:
            body["thread_ts"] = thread_ts
        data = await self._call(step, "POST", "/slack/sandbox/messages", body)
        return str(data["ts"])


async def _until(
    step: str, what: str, probe: Callable[[], Awaitable[T | None]], within: float
) -> T:
    """Poll ``probe`` until it returns something, or fail the step at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last_error: str | None = None
    while True:
        try:
            found = await probe()
        except aiohttp.ClientError as e:  # the server is local: a hiccup, not an answer
            found, last_error = None, f"{type(e).__name__}: {e}"
        if found is not None:
            return found
        if loop.time() >= deadline:
            because = f" (last error: {last_error})" if last_error else ""
            raise ScenarioError(f"step {step} did not complete within {within:g}s: {what}{because}")
        await asyncio.sleep(POLL_INTERVAL)


# --- reading the snapshots ------------------------------------------------------------


def _is_bot(slack: Mapping[str, Any], msg: Mapping[str, Any]) -> bool:
    return bool(msg.get("bot_id")) or msg.get("user") == slack.get("bot_user_id")


def _channel(slack: Mapping[str, Any], channel_id: str) -> Mapping[str, Any]:
    for chan in slack.get("channels", []):
        if chan["id"] == channel_id:
            return chan  # type: ignore[no-any-return]
    raise ScenarioError(f"the Slack stand-in has no channel {channel_id}")


def _ticket_root(
    slack: Mapping[str, Any], tweet_id: str
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """(channel, root message) of the ticket made from this tweet, in whichever channel."""
    for chan in slack.get("channels", []):
        for msg in chan.get("messages", []):
            meta = msg.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if (
                _is_bot(slack, msg)
                and meta.get("event_type") == TICKET_EVENT
                and str(payload.get("tweet_id")) == tweet_id
            ):
                return chan, msg
    return None


def _thread(slack: Mapping[str, Any], channel_id: str, root_ts: str) -> list[Mapping[str, Any]]:
    return [
        m
        for m in _channel(slack, channel_id).get("messages", [])
        if m.get("thread_ts") == root_ts and m.get("ts") != root_ts
    ]


def _person(slack: Mapping[str, Any], user_id: str) -> str:
    for user in slack.get("users", []):
        if user.get("id") == user_id:
            return str(user.get("real_name") or user.get("name") or user_id)
    return user_id


def _oncall(slack: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    mentioned = _MENTION.findall(str(root.get("text") or ""))
    return f", on call: {_person(slack, mentioned[0])}" if mentioned else ""


def _ticket_number(root: Mapping[str, Any]) -> str:
    payload = (root.get("metadata") or {}).get("event_payload") or {}
    return str(payload.get("ticket", "?"))


# --- the scenario ---------------------------------------------------------------------


async def play(
    console_url: str,
    *,
    log: Callable[[str], None] = print,
    timeout: float = 60,  # noqa: ASYNC109 - a deadline per step, not for the whole call
) -> None:
    """Play the scripted scenario against a running sandbox and bridge.

    ``timeout`` bounds each step's wait for the bridge; a step that does not complete raises
    ScenarioError naming it.
    """
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        console = _Console(session, console_url)

        async def ticket_in(step: str, tweet_id: str, channel_id: str) -> Mapping[str, Any]:
            async def probe() -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
                return _ticket_root(await console.slack_state(step), tweet_id)

            chan, root = await _until(
                step,
                f"no ticket for tweet {tweet_id} appeared in Slack (is the bridge polling X?)",
                probe,
                timeout,
            )
            if chan["id"] != channel_id:
                raise ScenarioError(
                    f"step {step}: tweet {tweet_id} became a ticket in #{chan['name']}, "
                    f"expected #{dict(CHANNELS)[channel_id]}"
                )
            return root

        # (a) A citizen asks in public; the bridge opens a ticket thread in #health.
        question_id = await console.tweet("a", CITIZEN, QUESTION)
        root = await ticket_in("a", question_id, HEALTH_CHANNEL)
        root_ts = str(root["ts"])
        ticket = _ticket_number(root)
        slack = await console.slack_state("a")
        log(
            f"(a) @{CITIZEN} tweeted {question_id}: ticket #{ticket} posted in #health"
            f"{_oncall(slack, root)}"
        )

        # (b) The agent leaves an internal note: it must stay in Slack.
        await console.post("b", HEALTH_AGENT, HEALTH_CHANNEL, NOTE, thread_ts=root_ts)
        log(f"(b) {_person(slack, HEALTH_AGENT)} added an internal note in the thread: {NOTE!r}")

        # (c) The agent answers in the thread; the bridge tweets it and confirms.
        before = {m["ts"] for m in _thread(slack, HEALTH_CHANNEL, root_ts)}
        await console.post("c", HEALTH_AGENT, HEALTH_CHANNEL, ANSWER, thread_ts=root_ts)

        async def reply_tweet() -> str | None:
            x = await console.x_state("c")
            bot_id = str(x["account"]["id"])
            for tweet in x["tweets"]:
                if (
                    str(tweet["author_id"]) == bot_id
                    and tweet.get("in_reply_to_tweet_id") == question_id
                    and not tweet.get("deleted")
                ):
                    return str(tweet["id"])
            return None

        reply_id = await _until(
            "c", f"the bot's reply to tweet {question_id} did not appear on X", reply_tweet, timeout
        )

        async def confirmed() -> bool | None:
            slack = await console.slack_state("c")
            for msg in _thread(slack, HEALTH_CHANNEL, root_ts):
                if msg["ts"] not in before and _is_bot(slack, msg) and reply_id in msg["text"]:
                    return True
            return None

        await _until(
            "c", f"the bot did not confirm reply tweet {reply_id} in the thread", confirmed, timeout
        )
        x = await console.x_state("c")
        if any(NOTE.removeprefix("note:").strip() in t["text"] for t in x["tweets"]):
            raise ScenarioError("step c: the internal note was tweeted in public")
        log(
            f"(c) the answer was tweeted as {reply_id} in reply to @{CITIZEN}, "
            "and the bot confirmed it in the thread (the note stayed internal)"
        )

        # (d) Another citizen asks about trains: it is routed to #transport.
        transport_id = await console.tweet("d", SECOND_CITIZEN, TRANSPORT_QUESTION)
        transport_root = await ticket_in("d", transport_id, TRANSPORT_CHANNEL)
        slack = await console.slack_state("d")
        transport_ticket = _ticket_number(transport_root)
        log(
            f"(d) @{SECOND_CITIZEN} tweeted {transport_id}: ticket #{transport_ticket} "
            f"posted in #transport{_oncall(slack, transport_root)}"
        )

        # (e) The first citizen replies to the bot's answer: a follow-up in the same thread.
        before = {m["ts"] for m in _thread(slack, HEALTH_CHANNEL, root_ts)}
        follow_up_id = await console.tweet("e", CITIZEN, FOLLOW_UP, in_reply_to=reply_id)

        async def followed_up() -> bool | None:
            slack = await console.slack_state("e")
            for msg in _thread(slack, HEALTH_CHANNEL, root_ts):
                text = str(msg.get("text") or "")
                if (
                    msg["ts"] not in before
                    and _is_bot(slack, msg)
                    and (follow_up_id in text or "prescription copy ok" in text)
                ):
                    return True
            return None

        await _until(
            "e",
            f"follow-up tweet {follow_up_id} did not appear in ticket #{ticket}'s thread",
            followed_up,
            timeout,
        )
        log(f"(e) @{CITIZEN}'s follow-up {follow_up_id} landed in ticket #{ticket}'s thread")

        # (f) An urgent query, worded like a transport one: #transport, marked URGENT.
        urgent_id = await console.tweet("f", SECOND_CITIZEN, URGENT_QUESTION)
        urgent_root = await ticket_in("f", urgent_id, TRANSPORT_CHANNEL)
        if "URGENT" not in str(urgent_root.get("text")):
            raise ScenarioError("step f: the urgent query's root does not say URGENT")
        urgent_ticket = _ticket_number(urgent_root)
        slack = await console.slack_state("f")
        log(
            f"(f) @{SECOND_CITIZEN} tweeted {urgent_id}: ticket #{urgent_ticket} posted in "
            f"#transport marked URGENT, pinging the lead at once{_oncall(slack, urgent_root)}"
        )

        # (g) The transport agent moves it to the health desk from its thread.
        urgent_ts = str(urgent_root["ts"])
        await console.post("g", TRANSPORT_AGENT, TRANSPORT_CHANNEL, "!move health", urgent_ts)

        async def moved() -> Mapping[str, Any] | None:
            slack = await console.slack_state("g")
            for msg in _channel(slack, HEALTH_CHANNEL).get("messages", []):
                payload = (msg.get("metadata") or {}).get("event_payload") or {}
                if _is_bot(slack, msg) and payload.get("key") == f"moved:{urgent_ticket}:1":
                    return msg
            return None

        await _until("g", f"ticket #{urgent_ticket} did not move to #health", moved, timeout)
        log(
            f"(g) {_person(slack, TRANSPORT_AGENT)} typed !move health in its thread: ticket "
            f"#{urgent_ticket} has a new thread in #health, and the #transport thread says so"
        )

        # (h) Over to the person at the console.
        log(f"Scenario complete. Open {console_url.rstrip('/')} and try it yourself.")


__all__ = [
    "CHANNELS",
    "HANDLE",
    "USERS",
    "ScenarioError",
    "play",
]
