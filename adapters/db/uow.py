"""One unit of work (`bot.ports.UnitOfWork`): a transaction's reads and writes.

It records; what a change means (audit entries, first responses) the handlers say.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from adapters.db.claims import (
    AUDIT,
    OUT,
    PART,
    REPLY,
    TICKET,
    TWEETS,
    Claims,
    _insert_ignoring_conflicts,
)
from adapters.db.rare import rare
from adapters.db.retention import Retention
from adapters.db.retractions import Retractions
from adapters.db.tables import (
    AuditRow,
    KeyValueRow,
    OutboxRow,
    OverrideRow,
    ReplyPartRow,
    ReplyRow,
    SavedAnswerRow,
    TicketMoveRow,
    TicketRow,
    TicketTweetRow,
)
from bot.domain import (
    Audit,
    ChannelId,
    ChatFile,
    ChatUserId,
    DepartmentId,
    MessageId,
    Outgoing,
    Override,
    Platform,
    SavedAnswer,
    ThreadRef,
    Ticket,
    TicketState,
    Tweet,
    TweetId,
    XUserId,
)
from bot.outbox import PartState, PostState, ReplyState
from bot.ports import (
    AuditEntry,
    Move,
    MovedThread,
    NewTicket,
    PendingPart,
    ReplyInfo,
)

# The newest tickets similar ones are looked for among: two weeks of Indian Railways'
# 6,500 mentions a day, where the answers to today's common questions are.
SEARCH_WINDOW = 100_000

# Statements that every reply and every ticket runs, built once and run on the unit's
# connection: building a statement each time and running it through the ORM session
# cost several times the query itself (bench/pipeline.py's CPU per ticket and reply).
_TICKET = select(TICKET).where(TICKET.c.number == bindparam("b_number"))
_TICKET_OF_THREAD = (
    select(TICKET)
    .where(
        TICKET.c.platform == bindparam("b_platform"),
        TICKET.c.channel == bindparam("b_channel"),
        TICKET.c.root == bindparam("b_root"),
    )
    .limit(1)
)
_REPLY_OF_MESSAGE = select(REPLY.c.id).where(
    REPLY.c.platform == bindparam("b_platform"),
    REPLY.c.channel == bindparam("b_channel"),
    REPLY.c.message_id == bindparam("b_message"),
)
_CREATE_TICKET = insert(TICKET)
_TICKETS_OF_TWEETS = select(TICKET).where(TICKET.c.tweet_id.in_(bindparam("b_ids", expanding=True)))
_ADD_PART = insert(PART)
_AUDIT = insert(AUDIT)
_POST_EXISTS = select(OUT.c.id).where(OUT.c.key == bindparam("b_key"))
_ENQUEUE = insert(OUT)
_REPLY = select(REPLY).where(REPLY.c.id == bindparam("b_id"))
_REPLY_PARTS = (
    select(PART.c.text, PART.c.tweet_id)
    .where(PART.c.reply == bindparam("b_id"))
    .order_by(PART.c.idx)
)
_FINISH_REPLY = (
    update(REPLY)
    .where(REPLY.c.id == bindparam("b_id"))
    .values(state=bindparam("b_state"), error=bindparam("b_error"))
)
_FIRST_RESPONSE = (
    update(TICKET)
    .where(TICKET.c.number == bindparam("b_number"), TICKET.c.first_response_at.is_(None))
    .values(first_response_at=bindparam("b_now"))
)
_ANSWERED_PG = text("UPDATE ticket_search SET answered = true WHERE ticket = :t")
_ANSWERED_SQLITE = text(
    "INSERT INTO answered_search (rowid, terms) "
    "SELECT rowid, terms FROM ticket_search WHERE rowid = :t"
)
_PART_SENT = (
    update(PART)
    .where(PART.c.id == bindparam("b_id"), PART.c.claimed_by == bindparam("b_token"))
    .values(state=PartState.SENT, tweet_id=bindparam("b_tweet"), claimed_by=None)
)


def _ticket(r: Any) -> Ticket:
    """A ticket from its row (an ORM object or a Core row: the same names)."""
    return Ticket(
        number=r.number,
        tweet_id=TweetId(r.tweet_id),
        department=DepartmentId(r.department),
        state=TicketState(r.state),
        author_id=XUserId(r.author_id),
        author_username=r.author_username,
        text=r.text,
        created_at=r.created_at,
        platform=r.platform,  # type: ignore[arg-type]
        channel=ChannelId(r.channel),
        root=MessageId(r.root) if r.root else None,
        conversation_id=TweetId(r.conversation_id) if r.conversation_id else None,
        assignee=ChatUserId(r.assignee) if r.assignee else None,
        first_response_at=r.first_response_at,
        closed_at=r.closed_at,
        escalated_at=r.escalated_at,
        reply_to=TweetId(r.reply_to),
        urgent=r.urgent,
        moves=r.moves,
        escalated_again_at=r.escalated_again_at,
    )


def _override(r: OverrideRow) -> Override:
    return Override(
        id=r.id,
        department=DepartmentId(r.department),
        member=ChatUserId(r.member),
        starts=r.starts,
        ends=r.ends,
        by=ChatUserId(r.created_by),
    )


class Tx(Claims, Retractions, Retention):
    """One unit of work: everything in it commits together or not at all."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.s = session
        self.now = now
        # Channels this unit queued chat posts for: delivery starts their lanes at once.
        self.lanes: set[tuple[Platform, str]] = set()

    # --- tickets and their tweets

    def tweet_known(self, tweet_id: TweetId) -> bool:
        found = select(TWEETS.c.tweet_id).where(TWEETS.c.tweet_id == tweet_id)
        return self.s.execute(found).first() is not None

    def known_tweets(self, tweet_ids: Sequence[str]) -> set[str]:
        if not tweet_ids:
            return set()
        rows = self.s.scalars(select(TWEETS.c.tweet_id).where(TWEETS.c.tweet_id.in_(tweet_ids)))
        return set(rows)

    def ticket(self, number: int) -> Ticket | None:
        row = self.c.execute(_TICKET, {"b_number": number}).first()
        return _ticket(row) if row else None

    def ticket_of_tweet(self, tweet_id: TweetId) -> Ticket | None:
        row = self.s.execute(
            select(TICKET)
            .join(TWEETS, TWEETS.c.ticket == TICKET.c.number)
            .where(TWEETS.c.tweet_id == tweet_id)
        ).first()
        return _ticket(row) if row else None

    def ticket_of_conversation(self, conversation_id: TweetId) -> Ticket | None:
        row = self.s.execute(
            select(TICKET)
            .where(TICKET.c.conversation_id == conversation_id)
            .order_by(TICKET.c.number.desc())
            .limit(1)
        ).first()
        return _ticket(row) if row else None

    def ticket_of_thread(self, platform: Platform, channel: str, root: str) -> Ticket | None:
        where = {"b_platform": platform, "b_channel": channel, "b_root": root}
        row = self.c.execute(_TICKET_OF_THREAD, where).first()
        return _ticket(row) if row else None

    def create_tickets(self, items: Sequence[NewTicket]) -> list[Ticket]:
        """Opens tickets in bulk: one INSERT for the lot, numbered in the given order."""
        values = [
            {
                "tweet_id": n.tweet.id,
                "conversation_id": n.tweet.conversation_id or n.tweet.id,
                "department": n.department,
                "state": TicketState.OPEN.value,
                "author_id": n.tweet.author_id,
                "author_username": n.tweet.author_username,
                "text": n.tweet.text,
                "created_at": n.tweet.created_at or self.now,
                "platform": n.platform,
                "channel": n.channel,
                "oncall": n.oncall,
                "reply_to": n.tweet.id,
                "urgent": bool(n.urgent),
                "moves": 0,
            }
            for n in items
        ]
        # One executemany, numbered in the given order (SQLite and psycopg run the rows
        # in order), then read back by tweet id: INSERT ... RETURNING in a given order has
        # no batched form on SQLite, and SQLAlchemy sent one statement per ticket.
        self.c.execute(_CREATE_TICKET, values)
        found = {
            row.tweet_id: row
            for row in self.c.execute(
                _TICKETS_OF_TWEETS, {"b_ids": [v["tweet_id"] for v in values]}
            )
        }
        rows = [found[v["tweet_id"]] for v in values]
        self.s.execute(
            insert(TWEETS),
            [
                {
                    "tweet_id": n.tweet.id,
                    "ticket": row.number,
                    "kind": "query",
                    "created_at": self.now,
                }
                for n, row in zip(items, rows, strict=True)
            ],
        )
        return [_ticket(r) for r in rows]

    def add_followup(self, ticket: int, tweet: Tweet) -> None:
        self.s.execute(
            insert(TWEETS).values(
                tweet_id=tweet.id, ticket=ticket, kind="followup", created_at=self.now
            )
        )
        self.s.execute(update(TICKET).where(TICKET.c.number == ticket).values(reply_to=tweet.id))

    def add_edit(self, ticket: int, tweet: Tweet, *, of_question: bool) -> None:
        """The newest version of an edited post, which is the citizen's latest tweet in
        the ticket (so replies go to it, as after a follow-up); an edited question also
        becomes the ticket's text."""
        self.s.add(
            TicketTweetRow(tweet_id=tweet.id, ticket=ticket, kind="edit", created_at=self.now)
        )
        values: dict[str, Any] = {"reply_to": tweet.id}
        if of_question:
            values["text"] = tweet.text
        self.s.execute(update(TicketRow).where(TicketRow.number == ticket).values(**values))

    def set_state(self, ticket: int, state: TicketState) -> None:
        values: dict[str, Any] = {"state": state.value}
        values["closed_at"] = self.now if state is TicketState.CLOSED else None
        if state is TicketState.OPEN:
            values["purged_at"] = None  # what it gathers now is purged after it closes
        self.s.execute(update(TicketRow).where(TicketRow.number == ticket).values(**values))

    def set_assignee(self, ticket: int, assignee: ChatUserId) -> None:
        self.s.execute(
            update(TicketRow).where(TicketRow.number == ticket).values(assignee=assignee)
        )

    def mark_escalated(self, ticket: int) -> bool:
        done = self.s.execute(
            update(TicketRow)
            .where(TicketRow.number == ticket, TicketRow.escalated_at.is_(None))
            .values(escalated_at=self.now)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def mark_urgent(self, ticket: int) -> bool:
        """Makes the ticket urgent; False if it was already (compare-and-set, so a replayed
        follow-up never says so twice)."""
        done = self.s.execute(
            update(TicketRow)
            .where(TicketRow.number == ticket, TicketRow.urgent.is_(False))
            .values(urgent=True)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def mark_escalated_again(self, ticket: int) -> bool:
        """The second step, at most once (compare-and-set, like `mark_escalated`)."""
        done = self.s.execute(
            update(TicketRow)
            .where(TicketRow.number == ticket, TicketRow.escalated_again_at.is_(None))
            .values(escalated_again_at=self.now)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def escalated_again_due(self, department: str, created_before: datetime) -> list[Ticket]:
        """Open tickets escalated once, still without a public reply, asked before
        `created_before` and not yet escalated again (ix_tickets_department_state_created)."""
        rows = self.s.scalars(
            select(TicketRow).where(
                TicketRow.department == department,
                TicketRow.state == TicketState.OPEN.value,
                TicketRow.created_at <= created_before,
                TicketRow.first_response_at.is_(None),
                TicketRow.escalated_at.is_not(None),
                TicketRow.escalated_again_at.is_(None),
                TicketRow.root.is_not(None),
            )
        )
        return [_ticket(r) for r in rows]

    def tickets(
        self,
        *,
        open_only: bool = True,
        assignee: str | None = None,
        department: str | None = None,
        limit: int = 20,
    ) -> list[Ticket]:
        """Up to `limit` tickets: urgent open ones first, then the oldest open ones, then
        (unless `open_only`) the closed ones, oldest first. Each state is read through
        its own index (ix_tickets_state_urgent_created, or the department's), so the
        answer costs the same with a million closed tickets behind it."""
        states = [TicketState.OPEN] if open_only else [TicketState.OPEN, TicketState.CLOSED]
        out: list[Ticket] = []
        for state in states:
            if len(out) >= limit:
                break
            q = select(TICKET).where(TICKET.c.state == state.value)
            if assignee is not None:
                q = q.where(TICKET.c.assignee == assignee)
            if department is not None:
                q = q.where(TICKET.c.department == department)
            q = q.order_by(TICKET.c.urgent.desc(), TICKET.c.created_at, TICKET.c.number)
            out += [_ticket(r) for r in self.s.execute(q.limit(limit - len(out)))]
        return out

    def open_summary(self, department: str) -> tuple[int, Ticket | None]:
        """How many of the department's tickets are open, and the oldest of them
        (ix_tickets_department_state_created: neither reads the closed history)."""
        is_open = (TicketRow.department == department, TicketRow.state == TicketState.OPEN.value)
        count = self.s.scalar(select(func.count()).select_from(TicketRow).where(*is_open)) or 0
        oldest = self.s.scalars(
            select(TicketRow)
            .where(*is_open)
            .order_by(TicketRow.created_at, TicketRow.number)
            .limit(1)
        ).first()
        return count, _ticket(oldest) if oldest is not None else None

    # --- figures: one department, a window of days, through an index each

    def open_by_department(self) -> dict[str, int]:
        """Open tickets per department, for /metrics: reads the open tickets only
        (ix_tickets_state_created), however long the closed history is."""
        rows = self.s.execute(
            select(TicketRow.department, func.count())
            .where(TicketRow.state == TicketState.OPEN.value)
            .group_by(TicketRow.department)
        )
        return {str(d): int(n) for d, n in rows}

    def ticket_counts(
        self, department: str, since: datetime, until: datetime
    ) -> tuple[int, int, int]:
        """Tickets asked, first answered and closed in (since, until]."""

        def count(column: Any) -> int:
            q = (
                select(func.count())
                .select_from(TicketRow)
                .where(TicketRow.department == department, column > since, column <= until)
            )
            return self.s.scalar(q) or 0

        return (
            count(TicketRow.created_at),
            count(TicketRow.first_response_at),
            count(TicketRow.closed_at),
        )

    def first_responses(self, department: str, since: datetime, until: datetime) -> list[float]:
        """Seconds from question to first public reply, for the tickets first answered
        in (since, until]."""
        rows = self.s.execute(
            select(TicketRow.created_at, TicketRow.first_response_at).where(
                TicketRow.department == department,
                TicketRow.first_response_at > since,
                TicketRow.first_response_at <= until,
            )
        )
        return [
            max(0.0, (answered - asked).total_seconds())
            for asked, answered in rows
            if answered is not None
        ]

    def oldest_open(self, department: str, limit: int) -> list[Ticket]:
        rows = self.s.scalars(
            select(TicketRow)
            .where(TicketRow.department == department, TicketRow.state == TicketState.OPEN.value)
            .order_by(TicketRow.created_at, TicketRow.number)
            .limit(limit)
        )
        return [_ticket(r) for r in rows]

    def waiting_since(self, department: str, created_before: datetime) -> int:
        """Open tickets asked before `created_before` that still have no public reply."""
        q = (
            select(func.count())
            .select_from(TicketRow)
            .where(
                TicketRow.department == department,
                TicketRow.state == TicketState.OPEN.value,
                TicketRow.created_at < created_before,
                TicketRow.first_response_at.is_(None),
            )
        )
        return self.s.scalar(q) or 0

    def unanswered_before(
        self,
        department: str,
        created_before: datetime,
        *,
        urgent_only: bool = False,
        limit: int = 200,
    ) -> list[Ticket]:
        q = select(TICKET).where(
            TICKET.c.department == department,
            TICKET.c.state == TicketState.OPEN.value,
            TICKET.c.first_response_at.is_(None),
            TICKET.c.escalated_at.is_(None),
            TICKET.c.root.is_not(None),
            TICKET.c.created_at <= created_before,
        )
        if urgent_only:
            q = q.where(TICKET.c.urgent.is_(True))
        # Through ix_tickets_unanswered, a bounded round: what is left waits 30 s.
        q = q.order_by(TICKET.c.created_at).limit(limit)
        return [_ticket(r) for r in self.s.execute(q)]

    # --- moves

    def move_ticket(
        self,
        number: int,
        expected_moves: int,
        department: str,
        platform: Platform,
        channel: str,
        by: str,
    ) -> Move | None:
        """Re-routes a ticket to another department's channel or room; None if it moved
        meanwhile (compare-and-set on its move count).

        Its thread is the new one from now on, without a root until the new root lands
        (`Claims.set_root`). What was queued for the thread it leaves stays pinned there;
        when that thread never came to be (its root had not gone out), its root is not
        sent and the posts that waited for it follow the ticket.
        """
        row = self.s.get(TicketRow, number, with_for_update=True)
        if row is None or row.moves != expected_moves:
            return None
        n = row.moves + 1
        self.s.add(
            TicketMoveRow(
                ticket=number,
                n=n,
                from_department=row.department,
                from_platform=row.platform,
                from_channel=row.channel,
                from_root=row.root,
                to_department=department,
                moved_by=by,
                moved_at=self.now,
            )
        )
        waiting = (
            OutboxRow.ticket == number,
            OutboxRow.in_thread.is_(True),
            OutboxRow.thread_root.is_(None),
        )
        if row.root is not None:
            self.s.execute(
                update(OutboxRow)
                .where(
                    *waiting,
                    OutboxRow.state.in_((PostState.PENDING, PostState.SENDING, PostState.UNKNOWN)),
                )
                .values(thread_root=row.root)
            )
        else:
            self.s.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.ticket == number,
                    OutboxRow.is_root.is_(True),
                    OutboxRow.state == PostState.PENDING,
                )
                .values(state=PostState.CANCELLED)
            )
            self.s.execute(
                update(OutboxRow)
                .where(*waiting, OutboxRow.state == PostState.PENDING)
                .values(platform=platform, channel=channel)
            )
        left = None
        if row.root is not None:
            was: Platform = row.platform  # type: ignore[assignment]
            left = ThreadRef(was, ChannelId(row.channel), MessageId(row.root))
        row.department, row.platform, row.channel = department, platform, channel
        row.root, row.moves = None, n
        return Move(n, left)

    def moved_from(self, platform: Platform, channel: str, root: str) -> MovedThread | None:
        """The ticket whose thread this was before a `move` took it elsewhere."""
        row = self.s.scalars(
            select(TicketMoveRow)
            .where(
                TicketMoveRow.from_platform == platform,
                TicketMoveRow.from_channel == channel,
                TicketMoveRow.from_root == root,
            )
            .order_by(TicketMoveRow.n.desc())
            .limit(1)
        ).first()
        ticket = self.ticket(row.ticket) if row is not None else None
        if row is None or ticket is None:
            return None
        return MovedThread(ticket, DepartmentId(row.from_department), row.n)

    def unsent_replies(self, ticket: int) -> list[ReplyInfo]:
        """The ticket's public replies still awaiting Send or on their way to X."""
        ids = self.s.scalars(
            select(ReplyRow.id)
            .where(
                ReplyRow.ticket == ticket,
                ReplyRow.state.in_((ReplyState.CONFIRM, ReplyState.PENDING)),
            )
            .order_by(ReplyRow.id)
        )
        return [info for i in list(ids) if (info := self.reply(i)) is not None]

    # --- on-call overrides

    def add_override(
        self, department: str, member: ChatUserId, starts: datetime, ends: datetime, by: ChatUserId
    ) -> Override:
        row = OverrideRow(
            department=department,
            member=member,
            starts=starts,
            ends=ends,
            created_by=by,
            created_at=self.now,
        )
        self.s.add(row)
        self.s.flush()
        return _override(row)

    def overrides(self, department: str, ending_after: datetime) -> list[Override]:
        """The department's overrides that end after `ending_after` (a handful: indexed)."""
        rows = self.s.scalars(
            select(OverrideRow)
            .where(OverrideRow.department == department, OverrideRow.ends > ending_after)
            .order_by(OverrideRow.id)
        )
        return [_override(r) for r in rows]

    def clear_overrides(self, department: str, by: ChatUserId) -> list[Override]:
        """Ends now every override of the department that has not ended; returns them."""
        rows = self.s.scalars(
            select(OverrideRow).where(
                OverrideRow.department == department, OverrideRow.ends > self.now
            )
        ).all()
        for r in rows:
            r.ends = max(r.starts, self.now)
            r.cleared_by, r.cleared_at = by, self.now
        return [_override(r) for r in rows]

    # --- the audit log

    def audit(self, ticket: int | None, actor: str, action: Audit, detail: str = "") -> None:
        self.audit_all([(ticket, actor, action, detail)])

    def audit_all(self, entries: Sequence[tuple[int | None, str, Audit, str]]) -> None:
        """Several audit entries in one statement (a poll's new tickets)."""
        if entries:
            rows = [
                {"ticket": t, "at": self.now, "actor": actor, "action": action, "detail": d}
                for t, actor, action, d in entries
            ]
            self.c.execute(_AUDIT, rows if len(rows) > 1 else rows[0])

    def audit_log(self, ticket: int) -> list[AuditEntry]:
        rows = self.s.scalars(
            select(AuditRow).where(AuditRow.ticket == ticket).order_by(AuditRow.id)
        )
        return [AuditEntry(r.at, r.actor, r.action, r.detail) for r in rows]

    # --- the chat outbox

    def enqueue(
        self, out: Outgoing, platform: Platform, in_thread: bool, *, new_key: bool = False
    ) -> bool:
        """Queues a chat post; False when one with this key exists already.

        `new_key` skips the look-up for keys that cannot exist yet (a new ticket's root);
        the unique constraint still guards them.
        """
        if not new_key and self.c.execute(_POST_EXISTS, {"b_key": out.key}).first() is not None:
            return False
        self.c.execute(_ENQUEUE, self._post_row(out, platform, in_thread))
        self.lanes.add((platform, out.channel))
        return True

    def enqueue_new(self, posts: Sequence[tuple[Outgoing, Platform]]) -> None:
        """Queues posts whose keys cannot exist yet (new tickets' roots), together in one
        statement; the unique constraint still guards them."""
        if posts:
            self.c.execute(_ENQUEUE, [self._post_row(out, p, False) for out, p in posts])
            self.lanes |= {(p, out.channel) for out, p in posts}

    def _post_row(self, out: Outgoing, platform: Platform, in_thread: bool) -> dict[str, Any]:
        return {
            "key": out.key,
            "ticket": out.ticket,
            "platform": platform,
            "channel": out.channel,
            "in_thread": in_thread,
            "is_root": out.is_root,
            "mark": out.mark,
            "body": out.body.to_json(),
            "actions": [{"id": a.id, "label": a.label, "value": a.value} for a in out.actions],
            "tweet_id": out.tweet_id,
            "thread_root": out.thread_root if in_thread else None,
            "created_at": self.now,
            "state": PostState.PENDING,
            "attempts": 0,
        }

    def roots_unsettled(self, platform: Platform, channel: str) -> bool:
        unsettled = (
            select(OUT.c.id)
            .where(
                rare(OUT.c.state.in_((PostState.SENDING, PostState.UNKNOWN))),
                OUT.c.platform == platform,
                OUT.c.channel == channel,
                OUT.c.is_root.is_(True),
            )
            .limit(1)
        )
        return self.s.execute(unsettled).first() is not None

    def posted(self, key: str) -> MessageId | None:
        """Where the chat post with this key landed, once it did."""
        mid = self.s.scalar(
            select(OutboxRow.message_id).where(
                OutboxRow.key == key, OutboxRow.state == PostState.DONE
            )
        )
        return MessageId(mid) if mid else None

    # --- replies

    def add_reply(
        self,
        ticket: Ticket,
        platform: Platform,
        channel: str,
        message_id: str,
        author: ChatUserId,
        text: str,
        parts: Sequence[str],
        confirm: bool,
        media: Sequence[ChatFile] = (),
        *,
        origin: str | None = None,
    ) -> int | None:
        """Records a public reply; None if this chat message was seen before, or this
        ticket has a reply of this origin already (both unique constraints, too)."""
        if origin is not None and self.reply_of_origin(ticket.number, origin) is not None:
            return None
        # A message seen before inserts nothing and returns no id: one statement, not a
        # look-up and an insert, on every agent's answer.
        reply_id = self.c.execute(
            _insert_ignoring_conflicts(self.s, REPLY, REPLY.c.id),
            {
                "ticket": ticket.number,
                "platform": platform,
                "channel": channel,
                "message_id": message_id,
                "author": author,
                "text": text,
                "in_reply_to": ticket.reply_to or ticket.tweet_id,
                "state": ReplyState.CONFIRM if confirm else ReplyState.PENDING,
                "created_at": self.now,
                "origin": origin,
            },
        ).scalar()
        if reply_id is None:
            return None
        attached = [m.to_json() for m in media] or None
        self.c.execute(
            _ADD_PART,
            [
                {
                    "reply": reply_id,
                    "idx": i,
                    "text": part,
                    "state": PartState.PENDING,
                    "attempts": 0,
                    "media": attached if i == 0 else None,
                }
                for i, part in enumerate(parts)
            ],
        )
        return int(reply_id)

    def reply_of_message(self, platform: Platform, channel: str, message_id: str) -> int | None:
        """The public reply an agent's chat message became, if it became one."""
        where = {"b_platform": platform, "b_channel": channel, "b_message": message_id}
        return self.c.execute(_REPLY_OF_MESSAGE, where).scalar()

    def waiting_replies(self, limit: int = 200) -> list[tuple[int, Ticket]]:
        """Replies waiting to be tweeted, oldest first, with their tickets."""
        rows = self.s.execute(
            select(REPLY.c.id.label("reply_id"), TICKET)
            .join(TICKET, TICKET.c.number == REPLY.c.ticket)
            .where(rare(REPLY.c.state == ReplyState.PENDING))
            .order_by(REPLY.c.id)
            .limit(limit)
        )
        return [(row.reply_id, _ticket(row)) for row in rows]

    def reply(self, reply_id: int) -> ReplyInfo | None:
        row = self.c.execute(_REPLY, {"b_id": reply_id}).first()
        return None if row is None else self._reply_info(row)

    def reply_of_origin(self, ticket: int, origin: str) -> ReplyInfo | None:
        """The ticket's reply a command made from this origin (`reuse:12`), if any."""
        row = self.s.scalars(
            select(ReplyRow).where(ReplyRow.ticket == ticket, ReplyRow.origin == origin)
        ).first()
        return None if row is None else self._reply_info(row)

    def _reply_info(self, row: Any) -> ReplyInfo:
        """A reply from its row (an ORM object or a Core row: the same names)."""
        parts = self.c.execute(_REPLY_PARTS, {"b_id": row.id}).all()
        return ReplyInfo(
            row.id,
            row.ticket,
            ReplyState(row.state),
            row.text,
            ChatUserId(row.author),
            tuple(TweetId(i) for _, i in parts if i),
            row.error,
            tuple(text for text, _ in parts),
        )

    def confirm_reply(self, reply_id: int, user: ChatUserId) -> bool:
        done = self.s.execute(
            update(ReplyRow)
            .where(ReplyRow.id == reply_id, ReplyRow.state == ReplyState.CONFIRM)
            .values(state=ReplyState.PENDING, confirmed_by=user)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def cancel_reply(self, reply_id: int) -> bool:
        """Cancels a reply still awaiting confirmation (never one already sent on); its
        origin is given up, so `answer`/`reuse` may queue it again."""
        done = self.s.execute(
            update(ReplyRow)
            .where(ReplyRow.id == reply_id, ReplyRow.state == ReplyState.CONFIRM)
            .values(state=ReplyState.CANCELLED, origin=None)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def finish_reply(self, reply_id: int, state: ReplyState, error: str | None = None) -> None:
        self.c.execute(_FINISH_REPLY, {"b_id": reply_id, "b_state": state, "b_error": error})

    def first_response(self, ticket: int) -> bool:
        """Stamps the ticket's first public response now, unless it has one; from then on
        it is among the answered tickets that new ones are compared with. True when this
        was the first."""
        done = self.c.execute(_FIRST_RESPONSE, {"b_number": ticket, "b_now": self.now})
        if done.rowcount:  # type: ignore[attr-defined]
            self._search_answered(ticket)
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def part_sent(self, part: PendingPart, tweet_id: TweetId) -> bool:
        """Records a part X accepted; False if our claim had expired (then it changes
        nothing, so nothing is recorded twice)."""
        sent = {"b_id": part.id, "b_token": part.token, "b_tweet": tweet_id}
        if not self.c.execute(_PART_SENT, sent).rowcount:
            return False
        self.c.execute(
            _insert_ignoring_conflicts(self.s, TWEETS),
            {"tweet_id": tweet_id, "ticket": part.ticket, "kind": "reply", "created_at": self.now},
        )
        return True

    def reply_tweet_ids(self, ticket: int) -> set[str]:
        return set(
            self.s.scalars(
                select(TicketTweetRow.tweet_id).where(
                    TicketTweetRow.ticket == ticket, TicketTweetRow.kind == "reply"
                )
            )
        )

    def part_refused(self, part: PendingPart, reason: str) -> bool:
        """Records X's refusal; False if our claim had expired (then it changes nothing)."""
        done = self.s.execute(
            update(ReplyPartRow)
            .where(ReplyPartRow.id == part.id, ReplyPartRow.claimed_by == part.token)
            .values(state=PartState.REFUSED, claimed_by=None)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    # --- small durable state

    def counts(self) -> dict[str, int]:
        """Gauges for /metrics (open tickets come from `open_by_department`, counted once)."""

        def count(table: Any, *where: Any) -> int:
            return self.s.scalar(select(func.count()).select_from(table).where(*where)) or 0

        return {
            "outbox_pending": count(
                OutboxRow,
                rare(
                    OutboxRow.state.in_((PostState.PENDING, PostState.UNKNOWN, PostState.SENDING))
                ),
            ),
            "outbox_failed": count(OutboxRow, rare(OutboxRow.state == PostState.FAILED)),
            "replies_pending": count(
                ReplyRow, rare(ReplyRow.state.in_((ReplyState.PENDING, ReplyState.CONFIRM)))
            ),
        }

    def get(self, key: str) -> str | None:
        row = self.s.get(KeyValueRow, key)
        return row.value if row else None

    def put(self, key: str, value: str) -> None:
        row = self.s.get(KeyValueRow, key)
        if row is None:
            self.s.add(KeyValueRow(key=key, value=value))
        else:
            row.value = value

    # --- the search index (which tickets asked the same thing)
    #
    # Two full-text indexes of each ticket's terms (`bot.similarity.terms`, space-separated):
    # every ticket, and the answered ones. SQLite: the FTS5 tables `ticket_search` and
    # `answered_search` (rowid = ticket number), tokenised so that a combining mark never
    # splits a word. PostgreSQL: the table `ticket_search` with a `tsvector` built from
    # the terms as they are (`array_to_tsvector`: no parser, no stemming of its own) and
    # a flag `answered`, each with a GIN index. `search_terms` counts the tickets holding
    # each term. The tables are made by migration 0003; the schema in tables.py does not
    # name them, as no ORM class can describe an FTS5 table.

    @property
    def _postgres(self) -> bool:
        return self.s.get_bind().dialect.name == "postgresql"

    def index_tickets(self, items: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Makes new tickets findable by their terms (not yet among the answered)."""
        rows = [
            {"t": number, "terms": " ".join(terms), "a": list(terms)} for number, terms in items
        ]
        if not rows:
            return
        if self._postgres:
            self.s.execute(
                text(
                    "INSERT INTO ticket_search (ticket, terms, lexemes, answered) "
                    "VALUES (:t, :terms, array_to_tsvector(CAST(:a AS text[])), false)"
                ),
                rows,
            )
        else:
            self.s.execute(
                text("INSERT INTO ticket_search (rowid, terms) VALUES (:t, :terms)"),
                [{"t": r["t"], "terms": r["terms"]} for r in rows],
            )
        counts = Counter(term for _, terms in items for term in set(terms))
        if counts:
            self.s.execute(
                text(
                    "INSERT INTO search_terms (term, df) VALUES (:term, :n) "
                    "ON CONFLICT (term) DO UPDATE SET df = search_terms.df + :n"
                ),
                [{"term": t, "n": n} for t, n in sorted(counts.items())],
            )

    def _search_answered(self, ticket: int) -> None:
        self.c.execute(_ANSWERED_PG if self._postgres else _ANSWERED_SQLITE, {"t": ticket})

    def reindex_ticket(self, ticket: int, terms: Sequence[str]) -> None:
        """A ticket's text changed: it is found by its new terms (answered or not, as before)."""
        if self._postgres:
            answered = self.s.scalar(
                text("SELECT answered FROM ticket_search WHERE ticket = :t"), {"t": ticket}
            )
        else:
            answered = self.s.scalar(
                text("SELECT 1 FROM answered_search WHERE rowid = :t"), {"t": ticket}
            )
        self.forget_search(ticket)
        self.index_tickets([(ticket, terms)])
        if answered:
            self._search_answered(ticket)

    def forget_search(self, ticket: int) -> None:
        """Takes a ticket out of the search indexes (its text is being forgotten)."""
        if self._postgres:
            terms = self.s.scalar(
                text("DELETE FROM ticket_search WHERE ticket = :t RETURNING terms"), {"t": ticket}
            )
        else:
            terms = self.s.scalar(
                text("SELECT terms FROM ticket_search WHERE rowid = :t"), {"t": ticket}
            )
            self.s.execute(text("DELETE FROM ticket_search WHERE rowid = :t"), {"t": ticket})
            self.s.execute(text("DELETE FROM answered_search WHERE rowid = :t"), {"t": ticket})
        if terms:
            self.s.execute(
                text("UPDATE search_terms SET df = df - 1 WHERE term = :term AND df > 0"),
                [{"term": t} for t in sorted(set(terms.split()))],
            )

    def term_counts(self, terms: Collection[str]) -> dict[str, int]:
        """How many tickets hold each term (terms no ticket holds are left out)."""
        if not terms:
            return {}
        rows = self.s.execute(
            text("SELECT term, df FROM search_terms WHERE term IN :terms").bindparams(
                bindparam("terms", expanding=True)
            ),
            {"terms": sorted(terms)},
        )
        return {term: df for term, df in rows if df}

    def ticket_count(self) -> int:
        """How many tickets there are (for how rare a term is)."""
        return self.s.scalar(select(func.max(TicketRow.number))) or 0

    def search(
        self, weights: Mapping[str, float], *, answered: bool, limit: int, every: bool = False
    ) -> list[tuple[int, tuple[str, ...]]]:
        """Tickets holding any of these terms (all of them when `every`), best first, with
        their terms.

        Best is by BM25 on SQLite; on PostgreSQL by the summed `weights` of the terms
        a ticket holds (its `ts_rank` knows nothing of how rare a term is).
        """
        if not weights:
            return []
        terms = sorted(weights)
        # Ranking reads every ticket that holds a common word: bounded to the newest ones
        # (ticket numbers are the search tables' keys), the lookup stays in milliseconds
        # at a million tickets instead of growing to a third of a second.
        newest = self.s.scalar(select(func.max(TicketRow.number))) or 0
        floor = max(0, newest - SEARCH_WINDOW)
        if self._postgres:
            params: dict[str, Any] = {
                "q": (" & " if every else " | ").join(_lexeme(t) for t in terms),
                "limit": limit,
                "floor": floor,
            }
            score = []
            for i, t in enumerate(terms):
                params[f"q{i}"], params[f"w{i}"] = _lexeme(t), float(weights[t])
                score.append(f"CASE WHEN lexemes @@ CAST(:q{i} AS tsquery) THEN :w{i} ELSE 0 END")
            rows = self.s.execute(
                text(
                    "SELECT ticket, terms FROM ticket_search "
                    "WHERE lexemes @@ CAST(:q AS tsquery) AND ticket > :floor"
                    + (" AND answered" if answered else "")
                    + f" ORDER BY {' + '.join(score)} DESC, ticket DESC LIMIT :limit"
                ),
                params,
            )
        else:
            table = "answered_search" if answered else "ticket_search"
            rows = self.s.execute(
                text(
                    f"SELECT rowid, terms FROM {table} WHERE {table} MATCH :q "
                    "AND rowid > :floor ORDER BY rank, rowid DESC LIMIT :limit"
                ),
                {
                    "q": (" AND " if every else " OR ").join(f'"{t}"' for t in terms),
                    "limit": limit,
                    "floor": floor,
                },
            )
        return [(number, tuple(found.split())) for number, found in rows]

    def latest_answers(self, tickets: Iterable[int]) -> dict[int, str]:
        """Each ticket's latest public answer that X accepted, as the agent wrote it."""
        numbers = sorted(set(tickets))
        if not numbers:
            return {}
        rows = self.s.execute(
            select(ReplyRow.ticket, ReplyRow.text)
            .where(ReplyRow.ticket.in_(numbers), ReplyRow.state == ReplyState.SENT)
            .order_by(ReplyRow.id)
        )
        return {number: body for number, body in rows}

    def public_replies(
        self, since: datetime, limit: int, department: str | None = None
    ) -> list[tuple[Ticket, list[list[tuple[str, str]]]]]:
        """Tickets first answered since `since`, newest first, each with its public
        replies X accepted: every chain as (text, tweet id) of each tweet, oldest first."""
        q = select(TicketRow).where(TicketRow.first_response_at >= since)
        if department is not None:
            q = q.where(TicketRow.department == department)
        rows = self.s.scalars(
            q.order_by(TicketRow.first_response_at.desc(), TicketRow.number.desc()).limit(limit)
        ).all()
        if not rows:
            return []
        numbers = [r.number for r in rows]
        parts = self.s.execute(
            select(ReplyRow.ticket, ReplyRow.id, ReplyPartRow.text, ReplyPartRow.tweet_id)
            .join(ReplyPartRow, ReplyPartRow.reply == ReplyRow.id)
            .where(ReplyRow.ticket.in_(numbers), ReplyRow.state == ReplyState.SENT)
            .order_by(ReplyRow.id, ReplyPartRow.idx)
        ).all()
        chains: dict[int, dict[int, list[tuple[str, str]]]] = {}
        for ticket, reply, part, tweet_id in parts:
            if tweet_id:
                chains.setdefault(ticket, {}).setdefault(reply, []).append((part, tweet_id))
        return [(_ticket(r), list(chains[r.number].values())) for r in rows if r.number in chains]

    # --- saved answers

    def save_answer(self, answer: SavedAnswer) -> SavedAnswer | None:
        """Keeps `answer` under its name in its department; the one it replaced, if any."""
        row = self.s.scalars(
            select(SavedAnswerRow).where(
                SavedAnswerRow.department == answer.department,
                SavedAnswerRow.name == answer.name,
            )
        ).first()
        before = None if row is None else _saved(row)
        if row is None:
            row = SavedAnswerRow(department=answer.department, name=answer.name)
            self.s.add(row)
        row.text, row.saved_by, row.saved_at = answer.text, answer.saved_by, answer.saved_at
        row.ticket = answer.ticket
        self.s.flush()
        return before

    def saved_answer(self, department: str, name: str) -> SavedAnswer | None:
        row = self.s.scalars(
            select(SavedAnswerRow).where(
                SavedAnswerRow.department == department, SavedAnswerRow.name == name
            )
        ).first()
        return None if row is None else _saved(row)

    def saved_answers(self, department: str | None = None) -> list[SavedAnswer]:
        q = select(SavedAnswerRow).order_by(SavedAnswerRow.department, SavedAnswerRow.name)
        if department is not None:
            q = q.where(SavedAnswerRow.department == department)
        return [_saved(r) for r in self.s.scalars(q)]

    def forget_answer(self, department: str, name: str) -> SavedAnswer | None:
        """Deletes a saved answer; what it was, or None if there was none."""
        row = self.s.scalars(
            select(SavedAnswerRow).where(
                SavedAnswerRow.department == department, SavedAnswerRow.name == name
            )
        ).first()
        if row is None:
            return None
        gone = _saved(row)
        self.s.delete(row)
        return gone


def _saved(r: SavedAnswerRow) -> SavedAnswer:
    return SavedAnswer(
        department=DepartmentId(r.department),
        name=r.name,
        text=r.text,
        saved_by=ChatUserId(r.saved_by),
        saved_at=r.saved_at,
        ticket=r.ticket,
    )


def _lexeme(term: str) -> str:
    """A term as a tsquery lexeme, taken as it is (no parser, no normalisation)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"
