"""A public page of common answers (`seva answers --html/--json`): what a department may
publish, gathered from the store.

Only what is public already, or meant to be: the saved answers' texts, and for each
recently answered ticket the citizen's question as tweeted and the replies as X shows
them, with links to both. Never a note, a name of staff, a saved answer's author or
anything else internal; and a question or answer holding personal data (a phone number,
an e-mail address, an Aadhaar number, a PAN) is left out whole, as a ministry's page
must not spread it further.
"""

from __future__ import annotations

from datetime import timedelta

from bot.config import Config
from bot.domain import tweet_url
from bot.ports import UnitOfWork
from bot.public import PublicPage, PublicQuestion, PublicReply, PublicSaved
from bot.safety import personal_data_kinds


def public_page(
    tx: UnitOfWork,
    config: Config,
    *,
    title: str,
    days: int,
    limit: int,
    department: str | None = None,
) -> PublicPage:
    """The saved answers, and the questions answered in the last `days` (newest first,
    at most `limit`), of one department or all."""
    now = tx.now
    since = now - timedelta(days=days)

    def name(dept: str) -> str:
        d = config.department(dept)
        return d.name if d is not None else dept

    saved = tuple(
        PublicSaved(name(a.department), a.name, a.text, a.saved_at)
        for a in tx.saved_answers(department)
        if not personal_data_kinds(a.text)
    )
    questions: list[PublicQuestion] = []
    withheld = 0
    for ticket, replies in tx.public_replies(since, limit, department):
        if not ticket.text:
            continue  # the retention purge forgot the question (safety.retention_days)
        chains = tuple(
            PublicReply(tuple((text, tweet_url("i", tid)) for text, tid in chain))
            for chain in replies
        )
        said = [ticket.text] + [r.text for r in chains]
        if any(personal_data_kinds(text) for text in said):
            withheld += 1
            continue
        questions.append(
            PublicQuestion(
                ticket.number,
                name(ticket.department),
                ticket.created_at,
                ticket.text,
                ticket.url,
                chains,
            )
        )
    return PublicPage(title, now, since, saved, tuple(questions), withheld)
