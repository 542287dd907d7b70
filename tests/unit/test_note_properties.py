"""Internal notes fail closed, whatever the markup around the word (SPEC section 5).

A missed note is an agent's private remark tweeted by a government account, so the
detector is checked over generated prefixes, spacing, markup, case and scripts. A fixed,
derandomised budget keeps CI time bounded and every run the same.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.safety import is_internal_note

BUDGET = settings(max_examples=300, deadline=None, derandomize=True)

NOTE_WORDS = ("note", "notes", "private", "internal", "नोट")  # SPEC's four, and "notes"
SEPARATORS = (":", "：", "-", "–")
# What may come before the word: spaces, zero-width characters, quotes (as typed and as
# Slack sends them), emphasis marks.
LEADING = (" ", "\t", "\n", "\u00a0", "\u3000", "\u200b", "\u200c", "\u200d", "\u2060")
LEADING += ("\ufeff", ">", "> ", "&gt;", "&gt; ", "*", "_", "~", "`", "```")


@st.composite
def any_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if up else c for c, up in zip(word, flips, strict=True))


leading = st.lists(st.sampled_from(LEADING), max_size=8).map("".join)
spaces = st.text(alphabet=" \t\u00a0", max_size=3)
some_spaces = st.text(alphabet=" \t\u00a0", min_size=1, max_size=3)
rest = st.text(max_size=40)
normal_form = st.sampled_from(("NFC", "NFD", "NFKC"))


@BUDGET
@given(
    lead=leading,
    word=st.sampled_from(NOTE_WORDS).flatmap(any_case),
    gap=spaces,
    separator=st.sampled_from(SEPARATORS),
    text=rest,
    form=normal_form,
)
def test_a_note_word_then_a_separator_is_always_a_note(
    lead: str, word: str, gap: str, separator: str, text: str, form: str
) -> None:
    message = unicodedata.normalize(form, lead + word + gap + separator + text)
    assert is_internal_note(message)


def _not_a_note_word(word: str) -> bool:
    return unicodedata.normalize("NFKC", word).casefold() not in NOTE_WORDS


# A first word of letters and combining marks, in any script (Latin, Devanagari, CJK…).
first_words = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Lt", "Lo", "Mn", "Mc")), min_size=1
).filter(_not_a_note_word)
near_misses = st.sampled_from(
    ("noted", "notebook", "nota", "notice", "privately", "internally", "नोटिस", "nöte", "not")
)


@BUDGET
@given(
    lead=leading,
    word=st.one_of(first_words, near_misses.flatmap(any_case)),
    gap=spaces,
    separator=st.sampled_from(SEPARATORS),
    text=rest,
)
def test_a_message_whose_first_word_is_another_word_is_never_a_note(
    lead: str, word: str, gap: str, separator: str, text: str
) -> None:
    assert not is_internal_note(lead + word + gap + separator + text)


@BUDGET
@given(
    word=st.sampled_from(NOTE_WORDS).flatmap(any_case),
    gap=some_spaces,
    next_word=first_words,
    text=rest,
)
def test_a_note_word_without_a_separator_is_not_a_note(
    word: str, gap: str, next_word: str, text: str
) -> None:
    """ "Note the office opens at 10" is a public answer: the separator is required."""
    assert not is_internal_note(word + gap + next_word + text)
