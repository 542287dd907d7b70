"""An agent's message in a ticket thread becomes a public reply (or stays internal)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bot.addressing import is_internal
from bot.config import Department
from bot.domain import (
    Action,
    Audit,
    ChannelId,
    ChatAction,
    ChatFile,
    ChatMessage,
    ChatUserId,
    Mention,
    MessageId,
    Outgoing,
    Platform,
    Quote,
    Rich,
    Text,
    Ticket,
)
from bot.media import sort_files
from bot.outbox import ActionId, ReplyState, preview_key
from bot.permissions import may_answer, may_change
from bot.ports import (
    CommandContext,
    MovedThread,
    NotYet,
    PendingPart,
    ReplyInfo,
    Standing,
    UnitOfWork,
)
from bot.safety import hold_reasons
from bot.tweettext import split_reply
from handlers import delivery, moves
from handlers.access import standing
from handlers.context import Bridge
from handlers.privacy import SafetyReply, parse_privacy_value

log = logging.getLogger("seva." + __name__)

LONG_REPLY = 1000  # characters: a reply this long is split on a worker thread first


async def on_message(b: Bridge, msg: ChatMessage) -> None:
    if msg.edited:
        await on_edit(b, msg)
        return
    if msg.thread_root is None:
        return
    if is_internal(msg.text):
        log.info("reply.internal_note channel=%s message=%s", msg.channel, msg.id)
        return
    text = msg.text.strip()
    if not text and not msg.files:
        return
    # A long reply takes milliseconds to split: that is done on a worker thread, not in
    # the transaction (which holds a database thread) nor on the loop, and queue_reply
    # finds it remembered. A short one fits a tweet or two: split where it is queued.
    if len(text) > LONG_REPLY:
        await asyncio.to_thread(split_reply, text)
    b.answering += 1  # its tweet waits on this: chat lanes let it go first
    try:
        outcome = await b.taking.add((msg, text), functools.partial(_take_replies, b))
    finally:
        b.answering -= 1
    if outcome is NOT_YET:
        raise NotYet(f"thread {msg.thread_root} may be a root still being recorded")
    if isinstance(outcome, NotAgent):
        await _tell_not_agent(b, msg, outcome)  # after the transaction
    elif isinstance(outcome, MovedThread):
        await moves.tell_moved(b, msg, outcome)
    elif isinstance(outcome, NothingToTweet):
        await _tell_sender(b, msg, "Nothing was tweeted: " + "; ".join(outcome.reasons) + ".")
    elif outcome is not None:
        b.kick()


async def _take_replies(b: Bridge, taking: list[tuple[ChatMessage, str]]) -> list[Any]:
    """Takes the agents' messages that arrived together in one unit of work, and claims
    the first tweet of each answer that goes out directly in that same unit: twenty
    answers at once cost a few units, not sixty, and their tweets go out as soon as the
    unit commits (`delivery.hand_over`). When the unit fails (a replay's constraint, a
    bug in one of them) it was rolled back whole, and each is taken again in a unit of
    its own, so only the message at fault fails (`bot.batch.Batch` raises its error for
    it alone); those are left to delivery's next round."""
    # Read on the loop, which owns the gates; X saying wait meanwhile is met by the
    # round, which hands a claimed part back untouched (`delivery._send_claimed`).
    claim = delivery.may_claim(b)
    try:
        taken, sending = await b.store.run_first(_take_all, b, taking, claim)
    except Exception as e:
        if len(taking) == 1:
            raise
        log.info("reply.take_apart count=%d error=%s", len(taking), type(e).__name__)
        return list(
            await asyncio.gather(
                *(b.store.run_first(_take_reply, b, msg, text) for msg, text in taking),
                return_exceptions=True,
            )
        )
    delivery.hand_over(b, sending)
    return taken


def _take_all(
    tx: UnitOfWork, b: Bridge, taking: list[tuple[ChatMessage, str]], claim: bool
) -> tuple[list[Any], list[PendingPart]]:
    taken = [_take_reply(tx, b, msg, text) for msg, text in taking]
    ready = [t.id for t in taken if isinstance(t, QueuedReply) and not t.confirm]
    return taken, tx.claim_next_parts(ready) if ready and claim else []


@dataclass(frozen=True, slots=True)
class NothingToTweet:
    """Only files X cannot take, and no text: the sender is told why."""

    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotAgent:
    """The sender may not answer this department's tickets in public (nor, for a button,
    change them)."""

    department: str
    external: bool = False

    def words(self, what: str) -> str:
        if self.external:
            return f"People from another workspace cannot {what} here."
        return f"Only {self.department}'s agents can {what}."


class _NotYet:
    """The thread may be a root that landed but is not recorded yet."""


NOT_YET = _NotYet()


def _take_reply(
    tx: UnitOfWork, b: Bridge, msg: ChatMessage, text: str
) -> NotAgent | MovedThread | NothingToTweet | QueuedReply | _NotYet | None:
    """A thread message as its ticket's public reply; None when it is no ticket's
    thread or a replay of a message taken already. In a thread its ticket was moved
    away from, nothing is tweeted any more. NOT_YET when the thread may be a root that
    landed but is not recorded yet (an agent can answer in the moment between the two,
    or while a post whose answer was lost is looked for)."""
    assert msg.thread_root is not None
    ticket = tx.ticket_of_thread(msg.platform, msg.channel, msg.thread_root)
    if ticket is None:
        moved = tx.moved_from(msg.platform, msg.channel, msg.thread_root)
        if moved is not None:
            return moved
        return NOT_YET if tx.roots_unsettled(msg.platform, msg.channel) else None
    dept = b.department(ticket.department)
    # Posted in the ticket's thread, so in the department's channel: a member there.
    here = Standing(member=True, power_level=msg.power_level, external=msg.external)
    if not may_answer(b.config, dept, msg.sender, here):
        log.info(
            "reply.not_agent ticket=%d sender=%s external=%s",
            ticket.number,
            msg.sender,
            msg.external,
        )
        return NotAgent(dept.name, msg.external)
    source = ReplySource(msg.platform, msg.channel, msg.id, msg.sender)
    images, refused = sort_files(msg.files)
    if not text and not images:
        return NothingToTweet(tuple(refused))
    return queue_reply(tx, b, ticket, source, text, media=images, held=refused)


@dataclass(frozen=True, slots=True)
class ReplySource:
    """Who asked for a public reply, and how: an agent's message in the ticket's thread
    (`message_id` is that message), or a command that tweets a text written elsewhere
    (`answer NAME`, `reuse FROM`: `origin` names it, and `message_id` is a key of the
    command's own). A ticket gets at most one reply of each origin."""

    platform: Platform
    channel: ChannelId
    message_id: str
    author: ChatUserId
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedReply:
    id: int
    parts: tuple[str, ...]
    confirm: bool  # waits for Send (or a ✅) before anything is tweeted
    held: tuple[str, ...] = ()  # why it waits although the department answers directly


def queue_reply(
    tx: UnitOfWork,
    b: Bridge,
    ticket: Ticket,
    source: ReplySource,
    text: str,
    *,
    media: Sequence[ChatFile] = (),
    held: Sequence[str] = (),
    approved: bool = False,
) -> QueuedReply | None:
    """Queues `text` as the ticket's public reply: the one way every path (an agent's
    message, `answer`, `reuse`, a confirmed preview) reaches X, so the reply mode, the
    safety holds and the chain rules apply to all of them alike. None when this source
    was queued already (a replayed event, a repeated command): nothing is queued twice.

    `media` are images to attach to the first tweet. The reply waits for an agent's
    Send, as in `reply_mode: confirm`, with the reasons shown above the exact text,
    when `held` gives reasons (files X cannot take) or `bot.safety.hold_reasons` finds
    it risky (personal data, someone else mentioned, a link elsewhere, a long chain).
    A text from elsewhere (`source.origin`) goes to many citizens, and X refuses a text
    the account tweeted before, so each of its tweets carries this ticket's number.
    `approved`: the sender pressed a button next to this exact text (the safety
    reply), which is the confirmation `reply_mode: confirm` asks for; holds still apply.
    """
    dept = b.department(ticket.department)
    ref = f"#{ticket.number}" if source.origin else None
    parts = split_reply(text, ref=ref) or ([""] if media else [])
    risky = hold_reasons(text, len(parts), ticket.author_username, b.config.safety)
    reasons = (*(f"this reply {r}" for r in risky), *held)
    confirm = (dept.reply_mode == "confirm" and not approved) or bool(reasons)
    reply_id = tx.add_reply(
        ticket,
        source.platform,
        source.channel,
        source.message_id,
        source.author,
        text,
        parts,
        confirm,
        media,
        origin=source.origin,
    )
    if reply_id is None:
        return None
    how = "awaiting confirmation" if confirm else "queued"
    if risky or held:
        how = "held: " + "; ".join((*risky, *held))
    if source.origin:
        how += f" ({source.origin})"
    tx.audit(ticket.number, source.author, Audit.REPLY, how)
    if confirm:
        preview = _preview(ticket, reply_id, parts, media=media, held=reasons)
        tx.enqueue(preview, ticket.platform, True)
    log.info(
        "reply.queued ticket=%d reply=%d parts=%d held=%d origin=%s",
        ticket.number,
        reply_id,
        len(parts),
        len(reasons),
        source.origin or "message",
    )
    return QueuedReply(reply_id, tuple(parts), confirm, reasons)


async def _tell_not_agent(b: Bridge, msg: ChatMessage, refused: NotAgent) -> None:
    """Says so, where only the sender sees it; a room-wide notice would answer every
    member's internal chat in the thread."""
    platform = b.platform(msg.platform)
    if platform is None or not platform.private_responses:
        return
    ctx = CommandContext(msg.platform, msg.channel, msg.sender, msg.thread_root)
    note = Rich.of(Text(refused.words("answer in public")[:-1] + ", so this stayed internal."))
    try:
        await platform.respond(ctx, note)
    except Exception as e:
        log.warning("reply.notice_failed error=%s", type(e).__name__)


async def on_action(b: Bridge, action: ChatAction) -> None:
    """The Send (or Cancel) of a reply waiting for confirmation.

    Both are compare-and-set on the reply's state: a second click, a second ✅ or a
    Cancel after Send changes nothing. The preview then loses its buttons and says who
    decided (best effort: the database is the truth).
    """
    if action.id == ActionId.PRIVACY_REPLY:
        await _safety_reply(b, action)
        return
    if action.id not in (ActionId.SEND, ActionId.CANCEL) or not action.value.isdigit():
        return
    reply_id = int(action.value)
    dept = await b.store.run(_department_of_reply, b, reply_id)
    if dept is None:
        return
    where = await _standing(b, dept, action)
    decided = await b.store.run(_decide, b, action, reply_id, dept.id, where)
    if isinstance(decided, NotAgent):
        await _tell(b, action, decided.words("send or cancel its replies") + " Nothing changed.")
        return
    if decided is None:
        return
    ticket, parts, verdict, preview = decided
    b.kick()
    platform = b.platform(ticket.platform)
    if preview is None or platform is None:
        return
    body = verdict + Rich(tuple(Quote(p) for p in parts))
    try:
        await platform.update(ticket.channel, preview, body)
    except Exception as e:
        log.warning("reply.preview_update_failed reply=%d error=%s", reply_id, type(e).__name__)


def _department_of_reply(tx: UnitOfWork, b: Bridge, reply_id: int) -> Department | None:
    info = tx.reply(reply_id)
    ticket = tx.ticket(info.ticket) if info is not None else None
    return b.department(ticket.department) if ticket is not None else None


async def _standing(b: Bridge, dept: Department, action: ChatAction) -> Standing:
    """The presser's standing in the department's channel: asked of the platform, since
    seeing a message (and its button) does not make someone a member."""
    return await standing(
        b,
        dept,
        action.user,
        platform=action.platform,
        posted_in=None,
        external=action.external,
    )


def _decide(
    tx: UnitOfWork, b: Bridge, action: ChatAction, reply_id: int, dept_id: str, where: Standing
) -> tuple[Ticket, tuple[str, ...], Rich, MessageId | None] | NotAgent | None:
    """Sends or cancels a reply awaiting confirmation (compare-and-set): the ticket, the
    reply's tweets, what the preview should now say and where it is; NotAgent when the
    presser may not decide for the department (its agents and the supervisors may:
    a held reply is often a lead's to approve); None if nothing changed."""
    user = action.user
    info = tx.reply(reply_id)
    if info is None or info.state != ReplyState.CONFIRM:
        return None
    ticket = tx.ticket(info.ticket)
    assert ticket is not None
    dept = b.department(ticket.department)
    if dept.id != dept_id or not may_change(b.config, dept, user, where):
        log.info("reply.action_refused reply=%d user=%s", reply_id, user)
        return NotAgent(dept.name, where.external)
    if action.id == ActionId.CANCEL:
        if not tx.cancel_reply(reply_id):
            return None
        tx.audit(ticket.number, user, Audit.REPLY, "cancelled")
        verdict = Rich.of(Text("Cancelled by "), Mention(user), Text("; nothing was tweeted:\n"))
    else:
        if not tx.confirm_reply(reply_id, user):
            return None
        tx.audit(ticket.number, user, Audit.REPLY, "confirmed")
        verdict = Rich.of(Text("Sent by "), Mention(user), Text("; tweeting:\n"))
    return ticket, info.parts, verdict, tx.posted(preview_key(reply_id))


def _preview(
    ticket: Ticket,
    reply_id: int,
    parts: list[str],
    *,
    media: Sequence[ChatFile] = (),
    held: Sequence[str] = (),
) -> Outgoing:
    count = len(parts)
    body = Rich()
    if held:
        body += Rich.of(
            Text("Held for confirmation", bold=True),
            Text(": " + "; ".join(held) + ".\n"),
        )
    body += Rich.of(
        Text("This will be tweeted" + (f" as {count} replies" if count > 1 else "") + ":\n"),
        *(Quote(p) for p in parts if p),
    )
    if media:
        names = ", ".join(f.name for f in media)
        body += Rich.of(Text(("\n" if any(parts) else "") + f"with the image(s) {names}"))
    return Outgoing(
        key=preview_key(reply_id),
        channel=ticket.channel,
        body=body,
        ticket=ticket.number,
        actions=(
            Action(ActionId.SEND, "Send", str(reply_id)),
            Action(ActionId.CANCEL, "Cancel", str(reply_id)),
        ),
    )


async def _tell_sender(b: Bridge, msg: ChatMessage, words: str) -> None:
    """A word to whoever sent the message, privately where the platform allows."""
    platform = b.platform(msg.platform)
    if platform is None:
        return
    ctx = CommandContext(msg.platform, msg.channel, msg.sender, msg.thread_root)
    try:
        await platform.respond(ctx, Rich.of(Text(words)))
    except Exception as e:
        log.warning("reply.notice_failed error=%s", type(e).__name__)


async def on_edit(b: Bridge, msg: ChatMessage) -> None:
    """An agent edited a message that is (or is about to be) a public reply: X posts
    cannot be edited, so the sender is told privately what happens instead. Edits are
    never tweeted; an edit of anything else says nothing."""

    def lookup(tx: UnitOfWork) -> ReplyInfo | None:
        reply_id = tx.reply_of_message(msg.platform, msg.channel, msg.id)
        return tx.reply(reply_id) if reply_id is not None else None

    info = await b.store.run(lookup)
    platform = b.platform(msg.platform)
    if info is None or platform is None:
        return
    if info.state == ReplyState.CONFIRM:
        words = (
            "Your edit is not in the preview: what you first wrote is what Send would "
            "tweet. Cancel it and write the answer again."
        )
    elif info.state in (ReplyState.SENT, ReplyState.PENDING):
        words = (
            "This answer was already tweeted, and a tweet cannot be edited, so your edit "
            "did not reach X. To correct it, reply again in this thread."
        )
    else:
        return  # refused or cancelled: nothing went out to change
    log.info("reply.edit_not_tweeted reply=%d state=%s", info.id, info.state)
    ctx = CommandContext(msg.platform, msg.channel, msg.sender, msg.thread_root)
    try:
        await platform.respond(ctx, Rich.of(Text(words)))
    except Exception as e:
        log.warning("reply.notice_failed error=%s", type(e).__name__)


async def _safety_reply(b: Bridge, action: ChatAction) -> None:
    """The safety reply offered where a citizen's post shows personal data: tweeted as
    the answer to that post once, whoever presses it how often (its source is the post)."""
    wanted = parse_privacy_value(action.value)
    if wanted is None:
        return
    ticket = await b.store.run(lambda tx: tx.ticket(wanted.ticket))
    if ticket is None:
        return
    dept = b.department(ticket.department)
    where = await _standing(b, dept, action)
    outcome = await b.store.run(_take_safety_reply, b, action, wanted, dept.id, where)
    if isinstance(outcome, NotAgent):
        await _tell(b, action, outcome.words("answer in public"))
    elif outcome is None:
        await _tell(b, action, "The safety reply to that post was sent already.")
    else:
        b.kick()


def _take_safety_reply(
    tx: UnitOfWork,
    b: Bridge,
    action: ChatAction,
    wanted: SafetyReply,
    dept_id: str,
    where: Standing,
) -> NotAgent | QueuedReply | None:
    ticket = tx.ticket(wanted.ticket)
    owner = tx.ticket_of_tweet(wanted.tweet_id)
    if ticket is None or owner is None or owner.number != ticket.number:
        return None
    dept = b.department(ticket.department)
    if dept.id != dept_id or not may_change(b.config, dept, action.user, where):
        log.info("reply.safety_refused ticket=%d user=%s", ticket.number, action.user)
        return NotAgent(dept.name, where.external)
    to_post = replace(ticket, reply_to=wanted.tweet_id)  # the post that shows the data
    source = ReplySource(ticket.platform, ticket.channel, f"privacy:{wanted.tweet_id}", action.user)
    return queue_reply(tx, b, to_post, source, wanted.text, approved=True)


async def _tell(b: Bridge, action: ChatAction, words: str) -> None:
    """Answers a button press privately, where the platform can (Slack's ephemerals)."""
    platform = b.platform(action.platform)
    if platform is None or not platform.private_responses:
        return
    ctx = CommandContext(action.platform, action.channel, action.user)
    try:
        await platform.respond(ctx, Rich.of(Text(words)))
    except Exception as e:
        log.warning("reply.notice_failed error=%s", type(e).__name__)
