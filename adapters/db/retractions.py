"""The retractions of a unit of work (a mixin of `Tx`): a public reply taken back from
X, part by part, recorded so a crash, a repeated command or a second instance never
retracts twice or tells the thread twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from adapters.db.rare import rare
from adapters.db.tables import ReplyPartRow, ReplyRow, RetractionRow
from bot.domain import ChatUserId, TweetId
from bot.outbox import ReplyState, RetractState
from bot.ports import PendingRetraction


class Retractions:
    s: Session
    now: datetime

    def last_public_reply(self, ticket: int) -> int | None:
        """The ticket's newest reply that went (or is going) out on X: at least one of its
        tweets was accepted, or it is queued to be; a retracted one counts too (it was the
        last public one: `retract` twice never reaches further back)."""
        sent_part = (
            select(ReplyPartRow.id)
            .where(ReplyPartRow.reply == ReplyRow.id, ReplyPartRow.tweet_id.is_not(None))
            .exists()
        )
        return self.s.scalar(
            select(ReplyRow.id)
            .where(
                ReplyRow.ticket == ticket,
                or_(ReplyRow.state == ReplyState.PENDING, sent_part),
            )
            .order_by(ReplyRow.id.desc())
            .limit(1)
        )

    def add_retraction(self, reply: int, ticket: int, by: ChatUserId) -> int | None:
        """Records that `by` asked to retract `reply`; None when it was asked already
        (the unique constraint is the guard against a race)."""
        if self.s.scalar(select(RetractionRow.id).where(RetractionRow.reply == reply)):
            return None
        row = RetractionRow(
            reply=reply,
            ticket=ticket,
            requested_by=by,
            requested_at=self.now,
            state=RetractState.PENDING,
            attempts=0,
        )
        self.s.add(row)
        self.s.flush()
        return row.id

    def due_retractions(self, limit: int = 20) -> list[PendingRetraction]:
        rows = self.s.scalars(
            select(RetractionRow)
            .where(
                rare(RetractionRow.state == RetractState.PENDING),
                or_(RetractionRow.not_before.is_(None), RetractionRow.not_before <= self.now),
            )
            .order_by(RetractionRow.id)
            .limit(limit)
        )
        return [
            PendingRetraction(r.id, r.reply, r.ticket, ChatUserId(r.requested_by), r.attempts)
            for r in rows
        ]

    def undeleted_parts(self, reply: int) -> list[tuple[int, TweetId]]:
        """(part id, tweet id) of the reply's tweets still on X, last part first, so a
        half-done retraction never leaves the chain's tail hanging under a deleted head."""
        rows = self.s.execute(
            select(ReplyPartRow.id, ReplyPartRow.tweet_id)
            .where(
                ReplyPartRow.reply == reply,
                ReplyPartRow.tweet_id.is_not(None),
                ReplyPartRow.deleted_at.is_(None),
            )
            .order_by(ReplyPartRow.idx.desc())
        )
        return [(part, TweetId(tweet)) for part, tweet in rows if tweet]

    def part_deleted(self, part: int) -> None:
        self.s.execute(
            update(ReplyPartRow)
            .where(ReplyPartRow.id == part, ReplyPartRow.deleted_at.is_(None))
            .values(deleted_at=self.now)
        )

    def deleted_tweets(self, reply: int) -> list[TweetId]:
        rows = self.s.scalars(
            select(ReplyPartRow.tweet_id)
            .where(ReplyPartRow.reply == reply, ReplyPartRow.deleted_at.is_not(None))
            .order_by(ReplyPartRow.idx)
        )
        return [TweetId(t) for t in rows if t]

    def finish_retraction(
        self, retraction: int, state: RetractState, error: str | None = None
    ) -> bool:
        """Pending -> done or failed, once (compare-and-set): only the caller that gets
        True tells the thread and writes the audit entry."""
        done = self.s.execute(
            update(RetractionRow)
            .where(RetractionRow.id == retraction, RetractionRow.state == RetractState.PENDING)
            .values(state=state, done_at=self.now, error=error)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def retraction_retry(self, retraction: int, not_before: datetime) -> None:
        self.s.execute(
            update(RetractionRow)
            .where(RetractionRow.id == retraction, RetractionRow.state == RetractState.PENDING)
            .values(not_before=not_before, attempts=RetractionRow.attempts + 1)
        )
