"""The outbox contract, pinned byte for byte.

Keys and action ids are stored remotely (Slack message metadata, Matrix event content
and transaction ids) and states in the database: a changed value would make a post a
crash hid look new (it would go out twice) or strand stored rows. If a test here
fails, the change needs a migration of what is stored, not an updated expectation.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from adapters.matrix.render import ACTIONS_FIELD, KEY_FIELD, TICKET_FIELD, TWEET_FIELD, txn_id
from adapters.slack.render import metadata
from bot.domain import ChannelId, Outgoing, Rich, TweetId
from bot.outbox import (
    ActionId,
    PartState,
    PostState,
    ReplyState,
    RetractState,
    ThreadMark,
    digest_key,
    escalate_again_key,
    escalate_key,
    followup_key,
    handoff_key,
    moved_away_key,
    moved_root_key,
    preview_key,
    refused_key,
    retracted_key,
    root_key,
    sent_key,
    thread_root_key,
    unverified_key,
)


def test_every_key_format() -> None:
    assert root_key(42) == "root:42"
    assert followup_key(TweetId("1800000000000000042")) == "followup:1800000000000000042"
    assert sent_key(7) == "sent:7"
    assert preview_key(7) == "preview:7"
    assert escalate_key(42) == "escalate:42"
    assert refused_key(7) == "refused:7"
    assert unverified_key(9) == "unverified:9"
    assert moved_root_key(42, 2) == "moved:42:2"
    assert moved_away_key(42, 2) == "moved-away:42:2"
    assert thread_root_key(42, 0) == "root:42" and thread_root_key(42, 3) == "moved:42:3"
    assert escalate_again_key(42) == "escalate2:42"
    ist = timezone(timedelta(hours=5, minutes=30))
    assert handoff_key("health", datetime(2026, 12, 1, 9, tzinfo=ist)) == (
        "handoff:health:2026-12-01T03:30:00Z"
    )
    assert digest_key("health", date(2026, 12, 1)) == "digest:health:2026-12-01"
    assert retracted_key(7) == "retracted:7"


def test_every_state_and_action_value() -> None:
    assert {s.name: s.value for s in PostState} == {
        "PENDING": "pending",
        "SENDING": "sending",
        "DONE": "done",
        "FAILED": "failed",
        "UNKNOWN": "unknown",
        "CANCELLED": "cancelled",
    }
    assert {s.name: s.value for s in PartState} == {
        "PENDING": "pending",
        "SENDING": "sending",
        "SENT": "sent",
        "REFUSED": "refused",
        "UNKNOWN": "unknown",
    }
    assert {s.name: s.value for s in ReplyState} == {
        "CONFIRM": "confirm",
        "PENDING": "pending",
        "SENT": "sent",
        "REFUSED": "refused",
        "CANCELLED": "cancelled",
        "RETRACTED": "retracted",
    }
    assert {s.name: s.value for s in RetractState} == {
        "PENDING": "pending",
        "DONE": "done",
        "FAILED": "failed",
    }
    assert {s.name: s.value for s in ThreadMark} == {
        "OPEN": "open",
        "CLOSED": "closed",
        "CLAIMED": "claimed",
        "ANSWERED": "answered",
        "ESCALATED": "escalated",
    }
    assert {a.name: a.value for a in ActionId} == {
        "SEND": "seva_send",
        "CANCEL": "seva_cancel",
        "PRIVACY_REPLY": "seva_privacy_reply",
    }


def test_where_slack_keeps_the_key() -> None:
    root = Outgoing(
        root_key(42),
        ChannelId("C0HEALTH"),
        Rich(),
        ticket=42,
        tweet_id=TweetId("180042"),
        is_root=True,
    )
    assert metadata(root) == {
        "event_type": "seva_ticket",
        "event_payload": {"ticket": 42, "tweet_id": "180042", "key": "root:42"},
    }
    followup = Outgoing(followup_key(TweetId("99")), ChannelId("C0HEALTH"), Rich(), ticket=1)
    assert metadata(followup) == {
        "event_type": "seva_post",
        "event_payload": {"key": "followup:99", "ticket": 1},
    }


def test_where_matrix_keeps_the_key() -> None:
    assert (KEY_FIELD, TICKET_FIELD, TWEET_FIELD, ACTIONS_FIELD) == (
        "org.sevabridge.key",
        "org.sevabridge.ticket",
        "org.sevabridge.tweet_id",
        "org.sevabridge.actions",
    )
    # The transaction id Synapse deduplicates a resend by, after a crash.
    assert txn_id("root:42") == "seva-c03535939795b00ba6ac65025e607c1d"
    assert txn_id("followup:180042") == "seva-db3dafbd19eb10e09bae1b46abcc1ea6"
