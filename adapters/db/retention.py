"""The retention purge of a unit of work (a mixin of `Tx`): closed tickets older than
`safety.retention_days` lose the citizen's words and name (SPEC section 5).

What goes: the ticket's text and the citizen's username; every chat post the bot made
for it (the root and follow-ups quote the citizen, previews and confirmations quote the
replies); the replies' texts (a reply often repeats what the citizen said, and a held
one may carry their number); the ticket's entry in the search index, and search terms
no other ticket holds; the username in its audit entries. What stays: every id (the
ticket's tweet, the citizen's X user id, the reply tweets), states, times, departments
and assignees, so figures and the audit trail still add up. Chat messages already
posted live on Slack or Matrix under their own retention settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from adapters.db.tables import AuditRow, OutboxRow, ReplyPartRow, ReplyRow, TicketRow
from bot.domain import Rich, Text, TicketState
from bot.outbox import PostState

REMOVED = Rich.of(Text("[removed after the retention period]")).to_json()


class Retention:
    s: Session
    now: datetime

    def purge_due(self, closed_before: datetime, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` closed tickets not purged since they closed before
        `closed_before`, longest closed first: (number, the citizen's username)."""
        rows = self.s.execute(
            select(TicketRow.number, TicketRow.author_username)
            .where(
                TicketRow.state == TicketState.CLOSED.value,
                TicketRow.purged_at.is_(None),
                TicketRow.closed_at < closed_before,
            )
            .order_by(TicketRow.closed_at)
            .limit(limit)
        )
        return [(number, username) for number, username in rows]

    def forget_unused_terms(self) -> None:
        """Drops the search vocabulary no ticket holds any more: a purged ticket's words
        (a phone number's digits among them) must not outlive it there either."""
        self.s.execute(text("DELETE FROM search_terms WHERE df <= 0"))

    def purge_tickets(self, tickets: Sequence[tuple[int, str]]) -> None:
        """Forgets the citizen's words and name in these tickets (see the module)."""
        numbers = [n for n, _ in tickets]
        if not numbers:
            return
        self.s.execute(
            update(TicketRow)
            .where(TicketRow.number.in_(numbers))
            .values(text="", author_username="", purged_at=self.now)
        )
        self.s.execute(
            update(OutboxRow)
            .where(
                OutboxRow.ticket.in_(numbers),
                OutboxRow.state.in_((PostState.DONE, PostState.FAILED)),
            )
            .values(body=REMOVED, actions=[])
        )
        replies = select(ReplyRow.id).where(ReplyRow.ticket.in_(numbers)).scalar_subquery()
        self.s.execute(update(ReplyPartRow).where(ReplyPartRow.reply.in_(replies)).values(text=""))
        self.s.execute(update(ReplyRow).where(ReplyRow.ticket.in_(numbers)).values(text=""))
        for number, username in tickets:
            if username:
                self.s.execute(
                    update(AuditRow)
                    .where(AuditRow.ticket == number)
                    .values(detail=func.replace(AuditRow.detail, "@" + username, "@…"))
                )
