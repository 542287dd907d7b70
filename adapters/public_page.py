"""The public page of common answers as files: one static HTML page and its JSON twin.

The page stands alone: no script, no web font, no image, no external stylesheet, so a
ministry can publish it anywhere and it works offline. Every text in it is escaped
(citizens' questions are untrusted); the only links are to X. It is built for people:
one heading level per section, a skip link, real `<time>` elements, text in any script
laid out by the browser (`dir="auto"`, line breaks kept), readable at any width, in
light and dark schemes, and in print.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, tzinfo
from html import escape
from itertools import groupby
from typing import Any

from bot.public import PublicPage, PublicQuestion, PublicSaved

STYLE = """
:root { color-scheme: light dark; --ink: #1b1b1b; --muted: #4a4a4a; --paper: #ffffff;
  --line: #d0d0d0; --accent: #0b5394; --quote: #f3f6fa; }
@media (prefers-color-scheme: dark) { :root { --ink: #ececec; --muted: #c2c2c2;
  --paper: #121212; --line: #3a3a3a; --accent: #8ab8f0; --quote: #1d2430; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--paper); color: var(--ink);
  font: 1.0625rem/1.6 system-ui, -apple-system, "Segoe UI", "Noto Sans",
  "Noto Sans Devanagari", "Noto Sans Tamil", "Noto Sans Bengali", sans-serif; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--paper); padding: .5rem; }
header, main, footer { max-width: 46rem; margin: 0 auto; padding: 0 1.25rem; }
header { padding-top: 2rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.9rem; line-height: 1.25; margin: 0 0 .5rem; }
h2 { font-size: 1.45rem; margin: 2.5rem 0 1rem; }
h3 { font-size: 1.15rem; margin: 1.75rem 0 .5rem; }
a { color: var(--accent); }
a:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; margin: .25rem 0; }
.meta { color: var(--muted); font-size: .95rem; margin: .25rem 0 0; }
article { border-top: 1px solid var(--line); padding: .25rem 0 1rem; }
blockquote { margin: .5rem 0; padding: .5rem .9rem; background: var(--quote);
  border-left: 4px solid var(--accent); }
.answer { margin: .75rem 0 0; }
.label { font-weight: 600; }
footer { color: var(--muted); font-size: .95rem; padding-top: 1.5rem; padding-bottom: 2rem;
  border-top: 1px solid var(--line); margin-top: 2.5rem; }
@media print { .skip, nav { display: none; } a { color: inherit; }
  a[href]::after { content: " (" attr(href) ")"; font-size: .85em; } }
"""


def _t(text: str) -> str:
    return escape(text, quote=True)


def _time(at: datetime, zone: tzinfo) -> str:
    local = at.astimezone(zone)
    shown = local.strftime("%-d %b %Y, %H:%M ") + (local.tzname() or "")
    return f'<time datetime="{_t(at.isoformat())}">{_t(shown.strip())}</time>'


def _heading(name: str) -> str:
    """A saved answer's name as a heading: `oxygen-refill` -> `Oxygen refill`."""
    words = name.replace("-", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _saved(saved: Iterable[PublicSaved], zone: tzinfo) -> list[str]:
    out: list[str] = []
    for department, answers in groupby(saved, key=lambda a: a.department):
        out.append(f"<h3>{_t(department)}</h3>")
        for a in answers:
            out.append(
                "<article>"
                f'<h4 class="label">{_t(_heading(a.name))}</h4>'
                f'<p class="text" dir="auto">{_t(a.text)}</p>'
                f'<p class="meta">Updated {_time(a.updated, zone)}</p>'
                "</article>"
            )
    return out


def _question(q: PublicQuestion, zone: tzinfo) -> str:
    parts = [
        f'<article aria-labelledby="q{q.ticket}">',
        f'<h3 id="q{q.ticket}">Question #{q.ticket} · {_t(q.department)}</h3>',
        f'<blockquote cite="{_t(q.question_url)}">'
        f'<p class="text" dir="auto">{_t(q.question)}</p></blockquote>',
        f'<p class="meta">Asked {_time(q.asked_at, zone)} · '
        f'<a href="{_t(q.question_url)}">the question on X</a></p>',
    ]
    for i, reply in enumerate(q.replies, 1):
        label = "Answer" if len(q.replies) == 1 else f"Answer {i}"
        links = [
            f'<a href="{_t(link)}">'
            + ("the answer on X" if len(reply.tweets) == 1 else f"part {n} on X")
            + "</a>"
            for n, (_, link) in enumerate(reply.tweets, 1)
        ]
        parts.append(
            f'<div class="answer"><p class="label">{label}</p>'
            f'<p class="text" dir="auto">{_t(reply.text)}</p>'
            f'<p class="meta">{", ".join(links)}</p></div>'
        )
    parts.append("</article>")
    return "".join(parts)


def render_html(page: PublicPage, zone: tzinfo) -> str:
    saved = _saved(page.saved, zone) or ["<p>No saved answers yet.</p>"]
    questions = [_question(q, zone) for q in page.questions] or [
        "<p>No questions were answered in this period.</p>"
    ]
    withheld = (
        f" {page.withheld} answered question(s) are not shown because they hold personal "
        "data such as a phone number."
        if page.withheld
        else ""
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_t(page.title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            '<a class="skip" href="#main">Skip to the answers</a>',
            "<header>",
            f"<h1>{_t(page.title)}</h1>",
            "<p>Answers our help desk has given in public on X, so that everyone can "
            f"read them. Updated {_time(page.generated_at, zone)}.</p>",
            '<nav aria-label="On this page"><ul>'
            '<li><a href="#saved">Answers to common questions</a></li>'
            '<li><a href="#recent">Recent questions and answers</a></li>'
            "</ul></nav>",
            "</header>",
            '<main id="main">',
            '<section aria-labelledby="saved">',
            '<h2 id="saved">Answers to common questions</h2>',
            *saved,
            "</section>",
            '<section aria-labelledby="recent">',
            '<h2 id="recent">Recent questions and answers</h2>',
            f"<p>Questions answered since {_time(page.since, zone)}, newest first.</p>",
            *questions,
            "</section>",
            "</main>",
            "<footer>",
            "<p>Each question is a public post on X by the citizen who asked it; each "
            f"answer is the help desk's public reply.{withheld}</p>",
            "</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def render_json(page: PublicPage) -> str:
    data: dict[str, Any] = {
        "title": page.title,
        "generated_at": page.generated_at.isoformat(),
        "answered_since": page.since.isoformat(),
        "saved_answers": [
            {
                "department": a.department,
                "name": a.name,
                "text": a.text,
                "updated_at": a.updated.isoformat(),
            }
            for a in page.saved
        ],
        "questions": [
            {
                "ticket": q.ticket,
                "department": q.department,
                "asked_at": q.asked_at.isoformat(),
                "question": q.question,
                "question_url": q.question_url,
                "answers": [
                    {
                        "text": r.text,
                        "tweets": [{"text": t, "url": u} for t, u in r.tweets],
                    }
                    for r in q.replies
                ],
            }
            for q in page.questions
        ],
        "withheld": page.withheld,
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
