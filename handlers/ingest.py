"""Ingest: mentions become tickets (or follow-ups in a ticket's thread).

The cursor (`x.since_id`) is written in the same transaction as the tickets, so a
crash before the commit re-reads the same page and one after it reads nothing
twice; `ticket_tweets.tweet_id` being a primary key makes a repeat harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from bot.config import Department
from bot.domain import (
    ACTOR_X,
    Audit,
    ChannelId,
    ChatUserId,
    Link,
    Media,
    Mention,
    Outgoing,
    Platform,
    Quote,
    Rich,
    Segment,
    Text,
    Ticket,
    TicketState,
    Tweet,
    TweetId,
    tweet_url,
)
from bot.outbox import ThreadMark, followup_key, root_key
from bot.ports import (
    Conflict,
    Count,
    NewTicket,
    RateLimited,
    StoreUnavailable,
    Unavailable,
    UnitOfWork,
)
from bot.routing import is_ignored, route, urgent_words
from handlers.context import Bridge, PollState, queue_mark
from handlers.oncall import member_now
from handlers.privacy import personal_data_notice
from handlers.similar import Suggestion, index_and_suggest, reindex

log = logging.getLogger("seva." + __name__)

CURSOR = "x.since_id"
SEARCH_CURSOR = "x.search_since_id"
POLL_LEASE = "x.poll"


async def poll(b: Bridge) -> int:
    """One poll of the mentions (and the optional search); returns tweets taken in.

    The two reads keep separate rate-limit and error states: a failing search never
    holds up the mentions.
    """
    ttl = _lease(b)
    if b.shared and not await b.store.run(lambda tx: tx.hold_lease(POLL_LEASE, b.instance, ttl)):
        # Another live instance polls and stores what it reads for everyone.
        b.mentions.standby, b.mentions.last_ok = True, b.clock.now()
        return 0
    b.mentions.standby = False
    taken = await _read(b, "mentions", b.mentions, CURSOR, b.source.mentions)
    query = b.config.x.search_query
    if query and b.me is not None:

        async def search(since: TweetId | None) -> list[Tweet]:
            return await b.source.search(query, since)

        taken += await _read(b, "search", b.search, SEARCH_CURSOR, search)
    if taken:
        b.kick()
    return taken


def _lease(b: Bridge) -> timedelta:
    """Long enough to outlive one poll, short enough that a dead poller is soon replaced."""
    return timedelta(seconds=3 * b.config.x.poll_seconds + 10)


async def _read(
    b: Bridge,
    what: str,
    state: PollState,
    cursor: str,
    fetch: Callable[[TweetId | None], Awaitable[list[Tweet]]],
) -> int:
    now = b.clock.now()
    if state.blocked_until is not None and now < state.blocked_until:
        return 0
    try:
        if b.me is None:
            b.me = await b.source.me()
        since = await b.store.get(cursor)
        tweets = await fetch(TweetId(since) if since else None)
        taken, _ = await b.store.run(ingest, b, tweets, cursor)
    except RateLimited as e:
        # A reset far ahead is not trusted: ask again within MAX_RATE_LIMIT_WAIT.
        state.blocked_until, state.error = e.until_capped(now), "rate limited"
        b.health.retrying(f"x.{what}", f"rate limited until {state.blocked_until.isoformat()}")
        b.metrics.count(Count.POLL_ERRORS, label=f"{what}_rate_limited")
        log.warning("poll.rate_limited what=%s until=%s", what, state.blocked_until.isoformat())
        return 0
    except StoreUnavailable as e:  # the database's trouble, not X's: /healthz says so
        b.metrics.count(Count.POLL_ERRORS, label=f"{what}_database")
        log.warning("poll.not_stored what=%s error=%s", what, e)
        return 0
    except Unavailable as e:
        state.error = str(e)
        b.health.retrying(f"x.{what}", str(e))
        b.metrics.count(Count.POLL_ERRORS, label=f"{what}_unavailable")
        log.warning("poll.unavailable what=%s error=%s", what, e)
        return 0
    except Conflict:
        # Another instance stored the same tweets first: its tickets stand, ours rolled
        # back whole, and the next poll starts from its cursor.
        b.metrics.count(Count.POLL_ERRORS, label=f"{what}_raced")
        log.info("poll.raced what=%s", what)
        return 0
    state.blocked_until, state.error, state.last_ok = None, None, b.clock.now()
    b.health.ok(f"x.{what}")
    return taken


def ingest(
    tx: UnitOfWork, b: Bridge, tweets: list[Tweet], cursor: str = CURSOR
) -> tuple[int, list[Ticket]]:
    """Stores new tickets and follow-ups with the cursor, as one unit of work.

    Returns how many tweets were taken in, and the closed tickets a follow-up reopened.
    """
    if not tweets:
        return 0, []
    assert b.me is not None
    b.metrics.count(Count.MENTIONS, len(tweets))
    ordered = sorted(tweets, key=lambda t: int(t.id))
    taken = 0
    reopened: list[Ticket] = []
    known = tx.known_tweets([t.id for t in ordered])
    batch = _Batch()
    for tweet in ordered:
        if tweet.id in known or tweet.author_id == b.me.id or tweet.is_retweet:
            continue
        if _ignored(b, tweet):
            continue
        known.add(tweet.id)
        taken += 1
        edited = _edited_ticket(tx, tweet)
        if edited is not None:
            if _add_edit(b, tx, edited, tweet):
                reopened.append(edited)
            continue
        ticket = _followup_target(tx, tweet)
        if ticket is not None:
            if _add_followup(b, tx, ticket, tweet):
                reopened.append(ticket)
        elif (first := batch.followup_of(tweet)) is not None:
            batch.followups.append((first, tweet))  # its ticket is opened just below
        else:
            batch.add(b, tx, tweet)
    opened = tx.create_tickets(batch.new) if batch.new else []
    similar = index_and_suggest(tx, opened)
    announced = [
        _announce(b, ticket, new, similar.get(ticket.number, ()))
        for ticket, new in zip(opened, batch.new, strict=True)
    ]
    tx.audit_all([entry for entry, _ in announced])
    tx.enqueue_new([root for _, root in announced])
    for first, tweet in batch.followups:
        _add_followup(b, tx, opened[first], tweet)  # just opened: never reopens
    for ticket in reopened:
        queue_mark(tx, ticket, ThreadMark.OPEN)
    current = tx.get(cursor)
    newest = ordered[-1].id
    if current is None or int(newest) > int(current):
        tx.put(cursor, newest)
    return taken, reopened


def _ignored(b: Bridge, tweet: Tweet) -> bool:
    """A mention from a `triage.ignore` account (abuse, bots): no ticket, no follow-up, no
    edit; only counted. The cursor still moves past it, so it is never read again."""
    if not is_ignored(tweet.author_username, b.config.triage):
        return False
    b.metrics.count(Count.IGNORED_MENTIONS)
    log.info("mention.ignored tweet=%s", tweet.id)
    return True


class _Batch:
    """The tickets one poll opens, so later tweets of the same poll can follow up on them."""

    def __init__(self) -> None:
        self.new: list[NewTicket] = []
        self.followups: list[tuple[int, Tweet]] = []
        self._index: dict[str, int] = {}
        self._oncall: dict[str, ChatUserId | None] = {}  # per department, for this poll

    def add(self, b: Bridge, tx: UnitOfWork, tweet: Tweet) -> None:
        cfg = b.config
        routing = route(tweet.text, cfg.departments, cfg.default_department, tweet.hashtags)
        dept = b.department(routing.department)
        if dept.id not in self._oncall:  # the rotation, or whoever an override put on call
            self._oncall[dept.id] = member_now(tx, dept, tx.now)
        oncall = self._oncall[dept.id]
        self._index[tweet.id] = len(self.new)
        self._index.setdefault(tweet.conversation_id or tweet.id, len(self.new))
        self.new.append(
            NewTicket(
                tweet,
                dept.id,
                dept.platform,
                ChannelId(dept.channel),
                oncall,
                matched=routing.matched,
                urgent=urgent_words(tweet.text, cfg.triage),
            )
        )

    def followup_of(self, tweet: Tweet) -> int | None:
        for ref in (tweet.replied_to, tweet.quoted, tweet.conversation_id):
            if ref is not None and ref != tweet.id and ref in self._index:
                return self._index[ref]
        return None


def _followup_target(tx: UnitOfWork, tweet: Tweet) -> Ticket | None:
    for ref in (tweet.replied_to, tweet.quoted):
        if ref is not None:
            ticket = tx.ticket_of_tweet(ref)
            if ticket is not None:
                return ticket
    if tweet.conversation_id and tweet.conversation_id != tweet.id:
        # An edited question starts a conversation under its new id, which the ticket
        # knows as one of its tweets rather than as its conversation.
        return tx.ticket_of_conversation(tweet.conversation_id) or tx.ticket_of_tweet(
            tweet.conversation_id
        )
    return None


def _edited_ticket(tx: UnitOfWork, tweet: Tweet) -> Ticket | None:
    """The ticket holding an earlier version of this post: an edit, never a new query.

    X gives an edited post a new id and lists the ids it replaced in its edit history;
    the conversation id of an edited question changes with it, so only the history
    links the two (facts-issue7 section 3).
    """
    for earlier in reversed(tweet.earlier_versions):
        ticket = tx.ticket_of_tweet(earlier)
        if ticket is not None:
            return ticket
    return None


def _add_edit(b: Bridge, tx: UnitOfWork, ticket: Ticket, tweet: Tweet) -> bool:
    """Shows the citizen's edit in the ticket's thread; public replies go to the newest
    version from now on. True when it reopened the ticket."""
    of_question = ticket.tweet_id in tweet.earlier_versions
    tx.add_edit(ticket.number, tweet, of_question=of_question)
    if of_question:
        reindex(tx, ticket.number, tweet.text)
    reopen = ticket.state is TicketState.CLOSED
    if reopen:
        tx.set_state(ticket.number, TicketState.OPEN)
        tx.audit(ticket.number, ACTOR_X, Audit.REOPENED, f"edit {tweet.id}")
    what = "the question" if of_question else "a follow-up"
    body = Rich.of(
        Text(f"@{tweet.author_username}", bold=True),
        Text(f" edited {what} on X. It now reads:\n"),
    )
    body += question(tweet) + Rich.of(
        Text("\n"),
        Link(tweet.url, "Open on X"),
        Text(" · public replies now go to this version."),
    )
    notice, actions = personal_data_notice(tweet.text, ticket.number, tweet.id)
    body += notice
    if reopen:
        body += Rich.of(Text("\n"), Text(f"Ticket #{ticket.number} reopened.", bold=True))
    body += _became_urgent(b, tx, ticket, tweet)
    tx.enqueue(
        Outgoing(
            key=followup_key(tweet.id),
            channel=ticket.channel,
            body=body,
            ticket=ticket.number,
            tweet_id=tweet.id,
            actions=actions,
        ),
        ticket.platform,
        in_thread=True,
    )
    b.metrics.count(Count.FOLLOWUPS)
    log.info("ticket.edited ticket=%d tweet=%s reopened=%s", ticket.number, tweet.id, reopen)
    return reopen


def _announce(
    b: Bridge, ticket: Ticket, new: NewTicket, similar: Sequence[Suggestion]
) -> tuple[tuple[int, str, Audit, str], tuple[Outgoing, Platform]]:
    """A new ticket's audit entry and thread root (`ingest` writes a poll's together)."""
    dept = b.department(ticket.department)
    b.metrics.count(Count.TICKETS, label=dept.id)
    if ticket.urgent:
        b.metrics.count(Count.URGENT_TICKETS, label=dept.id)
    log.info(
        "ticket.created ticket=%d tweet=%s department=%s urgent=%s",
        ticket.number,
        ticket.tweet_id,
        dept.id,
        ticket.urgent,
    )
    entry = (
        ticket.number,
        ACTOR_X,
        Audit.CREATED,
        f"@{ticket.author_username} → {ticket.department}",
    )
    root = Outgoing(
        key=root_key(ticket.number),
        channel=ticket.channel,
        body=root_body(
            ticket, dept, new.oncall, new.tweet, similar, matched=new.matched, urgent=new.urgent
        ),
        ticket=ticket.number,
        tweet_id=ticket.tweet_id,
        is_root=True,
        actions=personal_data_notice(new.tweet.text, ticket.number, ticket.tweet_id)[1],
    )
    return entry, (root, ticket.platform)


def _add_followup(b: Bridge, tx: UnitOfWork, ticket: Ticket, tweet: Tweet) -> bool:
    """Posts a follow-up into the ticket's thread; True when it reopened the ticket."""
    tx.add_followup(ticket.number, tweet)
    reopen = ticket.state is TicketState.CLOSED
    if reopen:
        tx.set_state(ticket.number, TicketState.OPEN)
        tx.audit(ticket.number, ACTOR_X, Audit.REOPENED, f"follow-up {tweet.id}")
    body = Rich.of(
        Text("Follow-up from "),
        Text(f"@{tweet.author_username}", bold=True),
        Text(":\n"),
    )
    body += question(tweet) + Rich.of(Text("\n"), Link(tweet.url, "Open on X"))
    notice, actions = personal_data_notice(tweet.text, ticket.number, tweet.id)
    body += notice
    if reopen:
        body += Rich.of(Text("\n"), Text(f"Ticket #{ticket.number} reopened.", bold=True))
    body += _became_urgent(b, tx, ticket, tweet)
    tx.enqueue(
        Outgoing(
            key=followup_key(tweet.id),
            channel=ticket.channel,
            body=body,
            ticket=ticket.number,
            tweet_id=tweet.id,
            actions=actions,
        ),
        ticket.platform,
        in_thread=True,
    )
    b.metrics.count(Count.FOLLOWUPS)
    log.info("ticket.followup ticket=%d tweet=%s reopened=%s", ticket.number, tweet.id, reopen)
    return reopen


def _became_urgent(b: Bridge, tx: UnitOfWork, ticket: Ticket, tweet: Tweet) -> Rich:
    """A follow-up or edit with a `triage.urgent` word makes its ticket urgent (listed
    first, escalated sooner) and says so in the thread, pinging `escalate_to` and whoever
    is on call as a new urgent ticket's root would. Once per ticket: it is a
    compare-and-set, so a ticket that is urgent already gets no second alarm."""
    words = urgent_words(tweet.text, b.config.triage)
    if not words or ticket.urgent or not tx.mark_urgent(ticket.number):
        return Rich()
    dept = b.department(ticket.department)
    tx.audit(ticket.number, ACTOR_X, Audit.URGENT, ", ".join(words))
    b.metrics.count(Count.URGENT_TICKETS, label=dept.id)
    log.info("ticket.urgent ticket=%d tweet=%s", ticket.number, tweet.id)
    body = Rich.of(
        Text("\n"),
        Text("Now URGENT", bold=True),
        Text(f" ({', '.join(words)}): "),
    )
    oncall = member_now(tx, dept, tx.now)  # the rotation, or an override
    people = [*([oncall] if oncall else []), *(u for u in dept.escalate_to if u != oncall)]
    for i, user in enumerate(people):
        body += Rich.of(Text(", " if i else ""), Mention(user))
    if not people:
        body += Rich.of(Text("nobody is on call to ping."))
    return body


def root_body(
    ticket: Ticket,
    dept: Department,
    oncall: ChatUserId | None,
    tweet: Tweet | None = None,
    similar: Sequence[Suggestion] = (),
    matched: Sequence[str] = (),
    urgent: Sequence[str] = (),
    origin: Sequence[Segment] = (),
) -> Rich:
    """The thread root. `matched` is what routed the ticket here and `urgent` the
    `triage.urgent` words it holds, so a misrouted or mis-triaged ticket shows why;
    `origin` is a moved ticket's line saying where it comes from."""
    asked = question(tweet) if tweet is not None else Rich.of(Quote(ticket.text))
    edited = " (edited)" if tweet is not None and tweet.earlier_versions else ""
    return Rich.of(
        Text(f"Ticket #{ticket.number}", bold=True),
        Text(f" · {dept.name}"),
        *_urgent_header(ticket, urgent),
        Text("\n"),
        *origin,
        *([Text("\n")] if origin else []),
        Text(f"@{ticket.author_username}", bold=True),
        Text(f" asked on X{edited}:\n"),
        *asked.segments,
        Text("\n"),
        Link(ticket.url, "Open on X"),
        *_personal_data_lines(ticket, tweet),
        *_matched_line(matched),
        *_similar_lines(similar),
        Text("\nOn call: "),
        Mention(oncall) if oncall else Text("nobody"),
        *_urgent_mentions(ticket, dept),
        Text(
            "\nReply in this thread to answer in public. "
            "Start with note: to keep a message internal, ! for a command (!help)."
        ),
    )


def _urgent_header(ticket: Ticket, words: Sequence[str]) -> tuple[Segment, ...]:
    """` · URGENT (ambulance)` in the root's first line."""
    if not ticket.urgent:
        return ()
    why = f" ({', '.join(words)})" if words else ""
    return (Text(" · "), Text("URGENT", bold=True), Text(why))


def _matched_line(matched: Sequence[str]) -> tuple[Segment, ...]:
    """`matched: #railways, refund`: what routed the ticket (nothing when it went to the
    default department because nothing matched)."""
    if not matched:
        return ()
    return (Text("\nmatched: "), Text(", ".join(matched)))


def _urgent_mentions(ticket: Ticket, dept: Department) -> tuple[Segment, ...]:
    """An urgent ticket pings the department's `escalate_to` at once, beside the on-call
    member, instead of waiting for the escalation."""
    if not ticket.urgent or not dept.escalate_to:
        return ()
    out: list[Segment] = [Text(" · urgent, also: ")]
    for i, user in enumerate(dept.escalate_to):
        out += [Text(", ")] if i else []
        out.append(Mention(user))
    return tuple(out)


def _personal_data_lines(ticket: Ticket, tweet: Tweet | None) -> tuple[Segment, ...]:
    """ "contains: phone number" and the suggested safety reply, when the post shows any."""
    text = tweet.text if tweet is not None else ticket.text
    return personal_data_notice(text, ticket.number, ticket.tweet_id)[0].segments


def question(tweet: Tweet) -> Rich:
    """A post as the thread shows it: its whole text, what it attaches and what it quotes.

    The text, alt texts and quoted text are the citizen's (escaped like all text); the
    only links are X's own: its media files and the quoted post.
    """
    out = Rich.of(Quote(tweet.text))
    if tweet.media:
        out += Rich.of(Text("\nAttached: "))
        for i, media in enumerate(tweet.media, 1):
            out += Rich.of(Text(", " if i > 1 else ""), *_media(media, i))
    if tweet.quoted is not None:
        if tweet.quoted_text is not None:
            who = f"@{tweet.quoted_username}" if tweet.quoted_username else "a post"
            url = tweet_url(tweet.quoted_username or "i", tweet.quoted)
            out += Rich.of(
                Text("\nQuoting "), Link(url, who), Text(":\n"), Quote(tweet.quoted_text)
            )
        else:
            out += Rich.of(Text("\nQuoting "), Link(tweet_url("i", tweet.quoted), "a post"))
    return out


def _media(media: Media, i: int) -> tuple[Segment, ...]:
    kind = {"photo": "photo", "video": "video", "animated_gif": "GIF"}.get(media.kind, "media")
    label = f"{kind} {i}"
    if media.duration_ms:
        seconds = round(media.duration_ms / 1000)
        label += f" ({seconds // 60}:{seconds % 60:02d})"
    target = media.link or media.image
    parts: list[Segment] = [Link(target, label) if target else Text(label)]
    if media.alt_text:
        parts.append(Text(f' (described as "{media.alt_text}")'))
    return tuple(parts)


def _similar_lines(similar: Sequence[Suggestion]) -> tuple[Text, ...]:
    """ "Similar answered: #12, #40" and the start of each answer, so the agent can reuse
    one (`reuse 12`) without opening it."""
    if not similar:
        return ()
    numbers = ", ".join(f"#{s.ticket}" for s in similar)
    lines = [Text("\n"), Text("Similar answered:", bold=True), Text(f" {numbers}")]
    for s in similar:
        lines.append(Text(f"\n#{s.ticket}: “{s.answer}”"))
    return tuple(lines)
