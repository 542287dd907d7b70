"""Fakes of the ports, for driving the core without I/O."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.domain import (
    ChatFile,
    ChatUserId,
    MessageId,
    Outgoing,
    Rich,
    ThreadRef,
    Tweet,
    TweetId,
    XUser,
    XUserId,
)
from bot.ports import (
    ActionHandler,
    CommandContext,
    CommandHandler,
    CredentialsRefused,
    MessageHandler,
    PlatformRefused,
    RateLimited,
    Standing,
    TweetRefused,
)

# Far from any date the suite runs on: a fake or helper that reads the wall clock
# instead of the injected one is years off, and its test fails at once, not one day.
T0 = datetime(2021, 5, 4, 10, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.t = now or T0

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


ME = XUser(XUserId("1000"), "SevaHelp", "Seva Help")


@dataclass
class FakeX:
    """Mentions to hand out, and the tweets the bot posted."""

    mentions_queue: list[Tweet] = field(default_factory=list)
    search_pool: list[Tweet] = field(default_factory=list)
    search_fails: Exception | None = None
    posted: list[tuple[str, str, str]] = field(default_factory=list)  # id, text, in_reply_to
    refuse: str | None = None
    fail_after_post: int = 0  # the next N posts land on X but the caller sees an error
    rate_limit_next: int = 0  # the next N posts get a 429
    rate_limit_for: timedelta = timedelta(minutes=15)  # ...whose reset lies this far ahead
    credentials_refused: bool = False  # every post refused: 401
    hidden: set[str] = field(default_factory=set)  # posted, not yet on the timeline
    post_calls: int = 0
    next_id: int = 5000
    uploads: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    media_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    clock: FakeClock = field(default_factory=FakeClock)
    deleted: list[str] = field(default_factory=list)  # in the order X deleted them
    delete_calls: int = 0
    refuse_delete: str | None = None
    fail_after_delete: int = 0  # the next N deletes happen but the caller sees an error

    async def me(self) -> XUser:
        return ME

    async def mentions(self, since_id: TweetId | None) -> list[Tweet]:
        newer = [t for t in self.mentions_queue if since_id is None or int(t.id) > int(since_id)]
        return sorted(newer, key=lambda t: int(t.id), reverse=True)

    async def search(self, query: str, since_id: TweetId | None) -> list[Tweet]:
        """Plain terms, all of which must appear (enough for the core's tests)."""
        if self.search_fails:
            raise self.search_fails
        terms = query.casefold().split()
        found = [t for t in self.search_pool if all(w in t.text.casefold() for w in terms)]
        return [t for t in found if since_id is None or int(t.id) > int(since_id)][::-1]

    async def upload_media(self, data: bytes, mimetype: str) -> str:
        self.next_id += 1
        self.uploads[str(self.next_id)] = (data, mimetype)
        return str(self.next_id)

    async def post(self, text: str, in_reply_to: TweetId, media_ids: Sequence[str] = ()) -> TweetId:
        self.post_calls += 1
        if self.credentials_refused:
            raise CredentialsRefused("X refused the posting credentials: 401 Unauthorized")
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            raise RateLimited(self.clock.now() + self.rate_limit_for, "post")
        if self.refuse:
            raise TweetRefused(self.refuse)
        if any(t == text and to == in_reply_to for _, t, to in self.posted):
            raise TweetRefused("You are not allowed to create a Tweet with duplicate content.")
        self.next_id += 1
        tid = str(self.next_id)
        self.posted.append((tid, text, in_reply_to))
        self.media_of[tid] = tuple(media_ids)
        if self.fail_after_post:
            self.fail_after_post -= 1
            raise ConnectionError("connection reset after the request was sent")
        return TweetId(tid)

    async def delete(self, tweet_id: TweetId) -> None:
        """Deletes a posted reply; one already gone counts as deleted (X's 404)."""
        self.delete_calls += 1
        if self.refuse_delete:
            raise TweetRefused(self.refuse_delete)
        if tweet_id in self.deleted:
            return
        self.deleted.append(tweet_id)
        self.posted = [p for p in self.posted if p[0] != tweet_id]
        if self.fail_after_delete:
            self.fail_after_delete -= 1
            raise ConnectionError("connection reset after the delete was sent")

    async def find_own_reply(
        self, in_reply_to: TweetId, text: str, exclude: Collection[str] = ()
    ) -> TweetId | None:
        for tid, t, to in self.posted:
            if t == text and to == in_reply_to and tid not in exclude and tid not in self.hidden:
                return TweetId(tid)
        return None


def tweet(
    tid: int,
    text: str,
    *,
    author: str = "citizen",
    author_id: str = "2000",
    replied_to: str | None = None,
    conversation_id: str | None = None,
    retweet: bool = False,
    created_at: datetime | None = None,
) -> Tweet:
    return Tweet(
        id=TweetId(str(tid)),
        text=text,
        author_id=XUserId(author_id),
        author_username=author,
        created_at=created_at or T0 - timedelta(minutes=1),
        conversation_id=TweetId(conversation_id or str(tid)),
        replied_to=TweetId(replied_to) if replied_to else None,
        is_retweet=retweet,
    )


@dataclass
class FakeChat:
    clock: FakeClock = field(default_factory=FakeClock)
    name: str = "slack"
    private_responses: bool = True
    burst: int = 20
    posts: list[tuple[MessageId, Outgoing]] = field(default_factory=list)
    marks: list[tuple[ThreadRef, str]] = field(default_factory=list)
    responses: list[tuple[CommandContext, Rich]] = field(default_factory=list)
    updates: list[tuple[MessageId, Rich]] = field(default_factory=list)
    fail_next: int = 0
    rate_limit_next: int = 0
    # Errors the next calls raise before doing anything (as Slack's ok:false would),
    # posts and marks alike; `refusing` refuses every call while set (a revoked token).
    errors: list[Exception] = field(default_factory=list)
    refusing: Exception | None = None
    post_calls: int = 0
    mark_calls: int = 0
    n: int = 0
    people: dict[str, ChatUserId] = field(default_factory=dict)  # name -> id
    files: dict[str, bytes] = field(default_factory=dict)  # file id -> bytes
    # Who is in which channel (None: everyone everywhere) and power levels (Matrix).
    members: dict[str, set[str]] | None = None
    levels: dict[str, int] = field(default_factory=dict)
    standing_asked: list[tuple[str, str]] = field(default_factory=list)

    def _fault(self) -> None:
        if self.refusing is not None:
            raise self.refusing
        if self.errors:
            raise self.errors.pop(0)

    async def post(self, message: Outgoing) -> MessageId:
        self.post_calls += 1
        self._fault()
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            raise RateLimited(self.clock.now() + timedelta(seconds=30), "chat.postMessage")
        self.n += 1
        mid = MessageId(f"{self.n}.000")
        self.posts.append((mid, message))
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("lost the answer")
        return mid

    async def find(self, message: Outgoing) -> MessageId | None:
        if self.refusing is not None:
            raise self.refusing
        return next((mid for mid, m in self.posts if m.key == message.key), None)

    async def mark(self, thread: ThreadRef, state: str) -> None:
        self.mark_calls += 1
        self._fault()
        self.marks.append((thread, state))

    async def update(self, channel: str, message_id: MessageId, body: Rich) -> None:
        self.updates.append((message_id, body))

    async def permalink(self, channel: str, message_id: MessageId) -> str:
        return f"https://chat.example/{channel}/{message_id}"

    async def respond(self, ctx: CommandContext, body: Rich) -> None:
        self.responses.append((ctx, body))

    async def start(
        self, on_message: MessageHandler, on_command: CommandHandler, on_action: ActionHandler
    ) -> None:
        pass

    async def stop(self) -> None:
        pass

    def health(self) -> dict[str, object]:
        return {"connected": True}

    async def standing(self, channel: str, user: str) -> Standing:
        self.standing_asked.append((channel, user))
        member = self.members is None or user in self.members.get(channel, set())
        return Standing(member=member, power_level=self.levels.get(user))

    async def find_user(self, name: str) -> ChatUserId | None:
        return self.people.get(name.lstrip("@").casefold())

    async def fetch_file(self, file: ChatFile) -> bytes:
        if file.id not in self.files:
            raise PlatformRefused(f"no file {file.id}")
        return self.files[file.id]

    def sent_keys(self) -> list[str]:
        return [m.key for _, m in self.posts]

    def by_key(self, key: str) -> tuple[MessageId, Outgoing]:
        return next((mid, m) for mid, m in self.posts if m.key == key)


AGENT = ChatUserId("U0AGENT1")


@dataclass
class FakeUserGroups:
    """Slack's user groups (bot.ports.UserGroups): members by group, and every call."""

    members: dict[str, list[ChatUserId]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, group)
    fail_next: Exception | None = None

    async def group_members(self, group: str) -> list[ChatUserId]:
        self.calls.append(("list", group))
        if self.fail_next is not None:
            e, self.fail_next = self.fail_next, None
            raise e
        return list(self.members.get(group, []))

    async def set_group_members(self, group: str, members: Sequence[ChatUserId]) -> None:
        self.calls.append(("update", group))
        self.members[group] = list(members)
