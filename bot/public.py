"""What a public page of common answers holds (`seva answers --html/--json`): built by
handlers/publish.py, written by adapters/public_page.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PublicSaved:
    department: str  # the department's name
    name: str
    text: str
    updated: datetime


@dataclass(frozen=True, slots=True)
class PublicReply:
    tweets: tuple[tuple[str, str], ...]  # (text, link) of each tweet of the chain

    @property
    def text(self) -> str:
        return "\n".join(text for text, _ in self.tweets)


@dataclass(frozen=True, slots=True)
class PublicQuestion:
    ticket: int
    department: str
    asked_at: datetime
    question: str
    question_url: str
    replies: tuple[PublicReply, ...]


@dataclass(frozen=True, slots=True)
class PublicPage:
    title: str
    generated_at: datetime
    since: datetime
    saved: tuple[PublicSaved, ...]
    questions: tuple[PublicQuestion, ...]
    withheld: int  # answered questions left out for holding personal data
