"""Splitting a long reply into a numbered chain by X's weighted counting rules."""

from __future__ import annotations

import re

import pytest
from twitter_text import extract_urls, parse_tweet

from bot.tweettext import MAX_WEIGHT, fits, split_reply, weighted_length

SUFFIX = re.compile(r" \((\d+)/(\d+)\)$")
FAMILY = "👨\u200d👩\u200d👧"  # one emoji: a zero-width-joiner sequence
FLAG = "🇮🇳"
NAMASTE = "नमस्ते"  # Devanagari with a virama and a vowel sign


def _check_chain(text: str, parts: list[str], limit: int = MAX_WEIGHT) -> list[str]:
    """Every part is valid and numbered i/n; returns the bodies without numbers."""
    assert len(parts) > 1
    bodies = []
    for i, part in enumerate(parts, 1):
        parsed = parse_tweet(part)
        assert parsed.weightedLength <= limit, (i, parsed.weightedLength, part)
        assert parsed.valid
        m = SUFFIX.search(part)
        assert m is not None, part
        assert (int(m.group(1)), int(m.group(2))) == (i, len(parts))
        body = part[: m.start()]
        assert body == body.strip() and body
        bodies.append(body)
    return bodies


def _words(text: str) -> list[str]:
    return text.split()


def test_text_that_fits_comes_back_unchanged() -> None:
    for text in ["Hello", "a" * 280, "字" * 140, "see https://example.com/" + "x" * 400, ""]:
        assert split_reply(text) == [text]
    assert split_reply("  spaced  out\n") == ["  spaced  out\n"]


def test_one_character_over_splits_into_two_numbered_parts() -> None:
    text = " ".join(["word"] * 56) + " end"  # 284 characters
    parts = split_reply(text)
    bodies = _check_chain(text, parts)
    assert len(parts) == 2
    assert _words(" ".join(bodies)) == _words(text)


def test_splits_at_word_boundaries_and_loses_nothing() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    parts = split_reply(text)
    bodies = _check_chain(text, parts)
    assert _words(" ".join(bodies)) == _words(text)
    assert all(parse_tweet(p).weightedLength > 240 for p in parts[:-1])  # parts are full


def test_devanagari_weighs_one_per_code_point() -> None:
    sentence = "ऑक्सीजन सिलेंडर जिला अस्पताल के वार्ड चार में उपलब्ध हैं। "
    assert weighted_length(sentence) == len(sentence)
    text = sentence * 12
    parts = split_reply(text)
    bodies = _check_chain(text, parts)
    assert _words(" ".join(bodies)) == _words(text)
    assert all(parse_tweet(p).weightedLength > 240 for p in parts[:-1])


def test_emoji_weigh_two_and_sequences_stay_whole() -> None:
    assert weighted_length("😷") == 2
    assert weighted_length(FAMILY) == 2
    text = " ".join([f"stay safe {FAMILY} {FLAG} 👍🏽"] * 40)
    parts = split_reply(text)
    bodies = _check_chain(text, parts)
    assert _words(" ".join(bodies)) == _words(text)
    joined = "".join(bodies)
    assert joined.count(FAMILY) == 40 and joined.count(FLAG) == 40


def test_urls_count_23_and_are_never_cut() -> None:
    url = "https://health.example.gov.in/oxygen/availability?district=north&ward=4#beds"
    assert weighted_length(url) == 23
    text = " ".join([f"Beds at {url} today."] * 20)
    parts = split_reply(text)
    bodies = _check_chain(text, parts)
    assert _words(" ".join(bodies)) == _words(text)
    assert sum(b.count(url) for b in bodies) == 20
    assert all(u == url for p in parts for u in extract_urls(p))
    # Counted as 23, a part fits seven of these blocks; at face value it would fit two.
    assert max(b.count(url) for b in bodies) == 7


def test_an_over_long_word_is_cut_hard_but_whole_characters() -> None:
    text = "x" * 700
    parts = split_reply(text)
    bodies = _check_chain(text, parts)
    assert "".join(bodies) == text

    emoji = FAMILY * 200  # weight 400, no spaces
    bodies = _check_chain(emoji, split_reply(emoji))
    assert "".join(bodies) == emoji
    assert all(b.count("\u200d") == 2 * b.count("👨") for b in bodies)

    hindi = NAMASTE * 60  # 360 code points, no spaces
    bodies = _check_chain(hindi, split_reply(hindi))
    assert "".join(bodies) == hindi
    assert all(b[0] not in "\u094d\u0947" for b in bodies)  # no part starts with a mark


def test_a_url_glued_to_a_long_word_is_not_cut() -> None:
    url = "https://example.com/a/very/long/path/that/must/not/be/cut"
    text = "y" * 260 + "(" + url + ")" + "z" * 100
    assert extract_urls(text) == [url]  # X sees a URL here (not after a letter)
    bodies = _check_chain(text, split_reply(text))
    assert "".join(bodies) == text
    assert any(url in b for b in bodies)


def test_ten_or_more_parts_are_numbered_with_room_for_two_digits() -> None:
    text = " ".join(f"item{i}" for i in range(700))
    parts = split_reply(text)
    assert len(parts) >= 10
    bodies = _check_chain(text, parts)
    assert parts[9].endswith(f" (10/{len(parts)})")
    assert _words(" ".join(bodies)) == _words(text)


def test_a_smaller_limit_is_honoured() -> None:
    text = " ".join(["लम्बा", "text", "😷"] * 30)
    parts = split_reply(text, limit=100)
    _check_chain(text, parts, limit=100)
    with pytest.raises(ValueError):
        split_reply(text, limit=20)


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii text",
        "line\r\nbreaks\r\ncount once",
        "e\u0301 composes to one",  # NFC: é
        NAMASTE,
        "tamil தமிழ் and bengali বাংলা",
        "字 and emoji 😷",
        "no-url dots like a.b and example.com count as url",
        "\u2014 dashes \u2019 quotes weigh one",
    ],
)
def test_weighted_length_agrees_with_the_official_rules(text: str) -> None:
    assert weighted_length(text) == parse_tweet(text).weightedLength


def test_fits() -> None:
    assert fits("a" * 280)
    assert not fits("a" * 281)
    assert not fits("")
    assert fits("字" * 140) and not fits("字" * 141)


# twitter_text's URL pattern reads long runs of dotted labels in quadratic time (3,000
# characters of "x.x.x…" took ten seconds, with nothing else running meanwhile). Such
# runs, and runs over 500 characters, are weighed by an upper bound instead.
HEAVY = [
    "x." * 20,
    "x/" + "x." * 12,
    "(" + "ab." * 15 + ")",
    "1." * 30,
    "https://" + "x." * 10 + "com",
    "y" * 260 + ".com",
    "www.example.com/" + "a" * 600,
    "ॐ." * 12 + "😷",
]


@pytest.mark.parametrize("run", HEAVY)
def test_a_heavy_run_is_never_weighed_lighter_than_x_weighs_it(run: str) -> None:
    assert weighted_length(run) >= parse_tweet(run).weightedLength
    text = f"Call 1075. {run} now"
    assert weighted_length(text) >= parse_tweet(text).weightedLength


@pytest.mark.parametrize("glue", ["", "x/", "(", "https://"])
def test_a_reply_of_thousands_of_dotted_labels_is_split_into_valid_parts(glue: str) -> None:
    text = glue + "x." * 1500  # read whole by twitter_text, this takes ten seconds and more
    parts = split_reply(text)
    assert "".join(SUFFIX.sub("", p) for p in parts) == text
    for part in parts[:5] + parts[-5:]:  # each part is small enough to read exactly
        assert parse_tweet(part).weightedLength <= MAX_WEIGHT


def test_text_around_a_heavy_run_keeps_its_exact_weight() -> None:
    heavy = "x." * 40
    around = "Beds at https://health.example.gov.in/ward?x=1 today. 😷 "
    assert weighted_length(around + heavy) == parse_tweet(around).weightedLength + (
        weighted_length(heavy)
    )


def test_a_reference_goes_into_every_part_so_each_tweet_is_distinct() -> None:
    assert split_reply("Trains resume at 6 am.", ref="#42") == ["Trains resume at 6 am. (ref #42)"]
    long = " ".join(f"Station {i} reopens at {i} am." for i in range(40))
    parts = split_reply(long, ref="#7")
    assert len(parts) > 2
    for i, part in enumerate(parts, 1):
        assert part.endswith(f" (ref #7, {i}/{len(parts)})")
        assert weighted_length(part) <= 280
    assert " ".join(p.rsplit(" (", 1)[0] for p in parts).split() == long.split()
    # Exactly at the limit without the reference: with it, a chain of two.
    full = "x" * 280
    assert split_reply(full) == [full]
    assert [p.rsplit(" (", 1)[1] for p in split_reply(full, ref="#1")] == [
        "ref #1, 1/2)",
        "ref #1, 2/2)",
    ]
