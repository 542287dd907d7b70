"""The stand-ins of X and Slack served from a thread, with a fixed cast and config.

Used by the end-to-end tests (tests/e2e/harness.py adds the real `seva run` process)
and by the benchmark (bench/pipeline.py). Callers talk to the stand-ins only over
HTTP, as a person at the console would.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from sandbox.server import Sandbox, start_sandbox
from sandbox.slack.state import SlackState
from sandbox.x.state import XState

HANDLE = "SevaHelp"
CHANNELS = [("C0HEALTH", "health"), ("C0TRANSPORT", "transport")]
USERS = [
    ("U0AGENT1", "asha", "Asha"),
    ("U0AGENT2", "vikram", "Vikram"),
    ("U0LEAD", "meera", "Meera"),
    ("U0HEAD", "devika", "Devika"),  # above the lead: the second escalation step
    ("U0TRANSPORT", "tariq", "Tariq"),
    ("U0VISITOR", "guest", "Guest"),
]
USERGROUPS = [("S0HEALTHONCALL", "health-oncall")]
TOKENS = {
    "X_BEARER_TOKEN": "e2e-bearer-token-0001",
    "X_API_KEY": "e2e-api-key-0001",
    "X_API_SECRET": "e2e-api-secret-0001",
    "X_ACCESS_TOKEN": "e2e-access-token-0001",
    "X_ACCESS_TOKEN_SECRET": "e2e-access-secret-0001",
    "SLACK_BOT_TOKEN": "xoxb-e2e-bot-token-0001",
    "SLACK_SIGNING_SECRET": "e2e-signing-secret-0001",
}

CONFIG: dict[str, Any] = {
    "x": {"poll_seconds": 0.2},
    "slack": {"post_rate_per_channel": 0},
    "departments": [
        {
            "id": "health",
            "name": "Health and hospitals",
            "slack_channel": "C0HEALTH",
            "keywords": ["oxygen", "hospital"],
            "hashtags": ["covid19"],
            "agents": ["U0AGENT1", "U0AGENT2"],
            "oncall": {
                "members": ["U0AGENT1", "U0AGENT2"],
                "shift_hours": 24 * 365 * 100,  # one shift for a century: tests never cross it
                "starts": "2020-01-01T00:00:00+05:30",
            },
            "escalate_after_minutes": 30,
            "escalate_to": ["U0LEAD"],
        },
        {
            "id": "transport",
            "name": "Trains and buses",
            "slack_channel": "C0TRANSPORT",
            "keywords": ["train", "bus"],
            "agents": ["U0TRANSPORT"],
            "reply_mode": "confirm",
        },
    ],
    "default_department": "health",
}


class Stand:
    """The X and Slack stand-ins on a free port, served from their own thread.

    `clock` (Unix seconds) is the world's time: when the bot runs on a controlled clock,
    the stand-ins share it, so a tweet is as old to the bot as it is to X.
    """

    def __init__(
        self, app_token: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.x = XState(
            username=HANDLE,
            bearer_token=TOKENS["X_BEARER_TOKEN"],
            api_key=TOKENS["X_API_KEY"],
            api_secret=TOKENS["X_API_SECRET"],
            access_token=TOKENS["X_ACCESS_TOKEN"],
            access_token_secret=TOKENS["X_ACCESS_TOKEN_SECRET"],
            clock=clock,
        )
        self.slack = SlackState(
            TOKENS["SLACK_BOT_TOKEN"],
            TOKENS["SLACK_SIGNING_SECRET"],
            None,
            channels=CHANNELS,
            users=USERS,
            rate_limit_per_channel=0,
            app_token=app_token,
            usergroups=USERGROUPS,
            clock=clock,
        )
        # A channel the bot was never added to: commands typed there need response_url.
        self.slack.add_channel("C0RANDOM", "random", bot_member=False)
        self.sandbox: Sandbox | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> Stand:
        self._thread.start()
        self.sandbox = self._run(
            start_sandbox("127.0.0.1", 0, x_state=self.x, slack_state=self.slack)
        )
        self.url = self.sandbox.url
        return self

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        if self.sandbox is not None:
            self._run(self.sandbox.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    # --- control API, over HTTP

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        r = requests.post(self.url + path, json=body, timeout=30)
        assert r.status_code < 300, f"{path}: {r.status_code} {r.text}"
        return r.json()

    def tweet(
        self,
        username: str,
        text: str,
        in_reply_to: str | None = None,
        *,
        media: list[dict[str, Any]] | None = None,
        quote: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "text": text}
        if in_reply_to:
            body["in_reply_to_tweet_id"] = in_reply_to
        if media:
            body["media"] = media
        if quote:
            body["quote_tweet_id"] = quote
        return self._post("/x/sandbox/tweets", body)["data"]

    def edit_tweet(self, tweet_id: str, text: str) -> dict[str, Any]:
        """The citizen edits a post: X gives the new version a new id."""
        return self._post(f"/x/sandbox/tweets/{tweet_id}/edit", {"text": text})["data"]

    def x_field_names(self, names: str) -> None:
        """Which spelling of X's field parameters the stand-in takes: old, new or both."""
        self._post("/x/sandbox/field_names", {"field_names": names})

    def delete_tweet(self, tweet_id: str) -> None:
        self._post(f"/x/sandbox/tweets/{tweet_id}/delete", {})

    def x_state(self) -> dict[str, Any]:
        return requests.get(self.url + "/x/sandbox/state", timeout=30).json()

    def x_state_requests(self) -> list[dict[str, Any]]:
        """Every X API request the stand-in answered: method, path, status, auth."""
        return requests.get(self.url + "/x/sandbox/requests", timeout=30).json()["data"]

    def bot_tweets(self) -> list[dict[str, Any]]:
        return [t for t in self.x_state()["tweets"] if t["username"] == HANDLE]

    def slack_state(self) -> dict[str, Any]:
        return requests.get(self.url + "/slack/sandbox/state", timeout=30).json()

    def messages(self, channel: str) -> list[dict[str, Any]]:
        for c in self.slack_state()["channels"]:
            if c["id"] == channel:
                return c["messages"]
        raise KeyError(channel)

    def roots(self, channel: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages(channel)
            if (m.get("metadata") or {}).get("event_type") == "seva_ticket"
        ]

    def thread(self, channel: str, root_ts: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages(channel)
            if m.get("thread_ts") == root_ts and m["ts"] != root_ts
        ]

    def say(
        self,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        *,
        files: list[tuple[str, str, bytes]] | None = None,
        stub_files: bool = False,
        broadcast: bool = False,
    ) -> dict[str, Any]:
        """A person posts; `files` as (name, mimetype, bytes) make it a file_share (shown
        as Slack Connect stubs with `stub_files`); `broadcast` also sends a thread
        reply to the channel (thread_broadcast)."""
        body: dict[str, Any] = {"user": user, "channel": channel, "text": text}
        if thread_ts:
            body["thread_ts"] = thread_ts
        if broadcast:
            body["broadcast"] = True
        if files:
            body["files"] = [
                {
                    "name": n,
                    "mimetype": m,
                    "content_base64": base64.b64encode(c).decode(),
                    "stub": stub_files,
                }
                for n, m, c in files
            ]
        return self._post("/slack/sandbox/messages", body)

    def command(self, user: str, channel: str, text: str) -> dict[str, Any]:
        """A slash command typed in `channel` (a `D…` id: a DM the bot is not in)."""
        return self._post(
            "/slack/sandbox/commands",
            {"user": user, "channel": channel, "text": text, "command": "/ticket"},
        )

    def edit(self, user: str, channel: str, ts: str, text: str) -> dict[str, Any]:
        """A person edits their message (Slack sends message_changed)."""
        return self._post(
            "/slack/sandbox/messages/edit",
            {"user": user, "channel": channel, "ts": ts, "text": text},
        )

    def ephemerals(self, user: str) -> list[dict[str, Any]]:
        """What only `user` was shown (ephemeral messages, answers to commands)."""
        return [e for e in self.slack_state()["ephemeral"] if e["user"] == user]

    def add_slack_user(self, user_id: str, name: str, team_id: str | None = None) -> dict[str, Any]:
        """A person joins the workspace (with `team_id`: a Slack Connect guest)."""
        return self._post(
            "/slack/sandbox/users",
            {"id": user_id, "name": name, "real_name": name.title(), "team_id": team_id},
        )

    def set_members(
        self, channel: str, members: list[str] | None, shared: bool | None = None
    ) -> dict[str, Any]:
        """Who is in a Slack channel (None: everyone), and whether it is shared."""
        body: dict[str, Any] = {"channel": channel, "members": members}
        if shared is not None:
            body["shared"] = shared
        return self._post("/slack/sandbox/channels/members", body)

    def redeliver(self, event_id: str) -> dict[str, Any]:
        return self._post("/slack/sandbox/redeliver", {"event_id": event_id})

    def click(self, user: str, channel: str, message_ts: str, action_id: str, value: str) -> Any:
        return self._post(
            "/slack/sandbox/actions",
            {
                "user": user,
                "channel": channel,
                "message_ts": message_ts,
                "action_id": action_id,
                "value": value,
            },
        )

    def slack_delays(self, **seconds: float) -> None:
        """Makes Web API methods slow to answer (`users_list=3` for users.list)."""
        delays = {k.replace("_", "."): v for k, v in seconds.items()}
        self._post("/slack/sandbox/config", {"delays": delays})

    def slack_state_scopes(self) -> list[str]:
        """The scopes the Slack stand-in grants the bot token now."""
        r = requests.post(
            self.url + "/slack/api/auth.test", data={"token": TOKENS["SLACK_BOT_TOKEN"]}, timeout=30
        )
        return r.headers["x-oauth-scopes"].split(",")

    def set_events_url(self, url: str) -> None:
        self._post("/slack/sandbox/config", {"events_url": url})

    def fault(self, **spec: Any) -> None:
        self._post("/x/sandbox/faults", spec)

    def slack_fault(
        self, method: str, error: str, times: int = 1, *, after_commit: bool = False
    ) -> None:
        """The next `times` calls of `method` answer Slack's `error`."""
        self._post(
            "/slack/sandbox/faults",
            {"method": method, "error": error, "times": times, "after_commit": after_commit},
        )

    def deliveries(self) -> list[dict[str, Any]]:
        """What the Slack stand-in sent the bot, each with its answer and how long it took."""
        r = requests.get(self.url + "/slack/sandbox/deliveries", timeout=30)
        return list(r.json()["deliveries"])

    def revoke_slack_token(self, error: str | None = "token_revoked") -> None:
        """Every Web API call answers `error` until called with None (restored)."""
        self._post("/slack/sandbox/token", {"revoked": error})

    def revoke_x_user_tokens(self, revoked: bool = True) -> None:
        """X answers 401 to the account's user tokens (posting) until restored."""
        self._post("/x/sandbox/credentials", {"user_tokens": "revoked" if revoked else "ok"})
