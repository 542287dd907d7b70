"""Routing and triage in India's languages: the labelled corpus, X's hashtag rules, whole words."""

from __future__ import annotations

import unicodedata
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError, Triage, parse_config
from bot.routing import (
    Routing,
    extract_hashtags,
    find_words,
    is_hashtag,
    is_ignored,
    normalise,
    route,
    urgent_words,
)
from tests.unit.conftest import CONFIG

CORPUS_FILE = Path(__file__).parent / "corpus" / "routing.yaml"
CORPUS: dict[str, Any] = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
CORPUS_CONFIG = parse_config(CORPUS["config"], str(CORPUS_FILE))
QUERIES: list[dict[str, Any]] = CORPUS["queries"]
LANGUAGES = {"hi", "mr", "ta", "bn", "ur", "te", "kn", "hi-Latn", "en"}


def routed(text: str, hashtags: list[str] | None = None) -> Routing:
    return route(text, CORPUS_CONFIG.departments, CORPUS_CONFIG.default_department, hashtags)


def _report(what: str, results: list[tuple[str, bool]], mistakes: list[str]) -> str:
    total, right = Counter(lang for lang, _ in results), Counter(lang for lang, ok in results if ok)
    n, ok = len(results), sum(right.values())
    langs = ", ".join(f"{lang} {right[lang]}/{total[lang]}" for lang in sorted(total))
    return "\n".join([f"{what}: {ok}/{n} right ({100 * ok / n:.1f}%) [{langs}]", *mistakes])


# --- The corpus


def test_the_corpus_covers_the_languages_citizens_write():
    assert len(QUERIES) >= 80
    assert {q["lang"] for q in QUERIES} >= LANGUAGES
    assert {q["dept"] for q in QUERIES} == {d.id for d in CORPUS_CONFIG.departments}


def test_every_corpus_query_reaches_its_department(capsys):
    results, mistakes = [], []
    for q in QUERIES:
        got = routed(q["text"])
        results.append((q["lang"], got.department == q["dept"]))
        if got.department != q["dept"]:
            why = ", ".join(got.matched) or "nothing"
            mistakes.append(
                f"  [{q['lang']}] {q['text']!r}: expected {q['dept']}, "
                f"got {got.department} (matched: {why})"
            )
    report = _report("routing corpus", results, mistakes)
    with capsys.disabled():
        print("\n" + report)
    assert not mistakes, report


def test_every_urgent_corpus_query_is_urgent_and_no_other(capsys):
    results, mistakes = [], []
    for q in QUERIES:
        expected, got = set(q.get("urgent", [])), set(urgent_words(q["text"], CORPUS_CONFIG.triage))
        results.append((q["lang"], got == expected))
        if got != expected:
            mistakes.append(f"  [{q['lang']}] {q['text']!r}: expected {expected}, got {got}")
    report = _report("urgent corpus", results, mistakes)
    with capsys.disabled():
        print(report)
    assert not mistakes, report
    assert sum(bool(q.get("urgent")) for q in QUERIES) >= 10


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_the_corpus_routes_the_same_however_the_text_is_encoded(form):
    for q in QUERIES:
        text = unicodedata.normalize(form, q["text"])
        assert routed(text) == routed(q["text"]), q["text"]


@pytest.mark.parametrize("case", CORPUS["false_routes"], ids=lambda c: c["text"])
def test_a_keyword_inside_a_longer_word_does_not_route(case):
    assert routed(case["text"]).department != case["not"]


@pytest.mark.parametrize("text", CORPUS["not_urgent"])
def test_an_urgent_word_inside_a_longer_word_is_not_urgent(text):
    assert urgent_words(text, CORPUS_CONFIG.triage) == ()


@pytest.mark.parametrize("case", CORPUS["false_words"], ids=lambda c: f"{c['word']}-{c['text']}")
def test_a_keyword_never_matches_part_of_a_word(case):
    assert find_words(case["text"], [case["word"]]) == ()
    assert find_words(f"({case['word']})", [case["word"]]) == (case["word"],)


def test_the_root_can_say_what_matched():
    assert routed("#RailMadad TTE asking for a bribe, PNR 4512345678") == Routing(
        "railways", ("#RailMadad", "PNR", "TTE")
    )
    assert routed("How do I renew my passport?") == Routing("grievances", ())


# --- Best match


DEPTS = {
    "departments": [
        {"id": "health", "name": "H", "slack_channel": "C1", "keywords": ["oxygen", "doctor"]},
        {
            "id": "railways",
            "name": "R",
            "slack_channel": "C2",
            "keywords": ["train", "Train", "PNR"],
            "hashtags": ["railways", "भारतीयरेल"],
        },
        {"id": "water", "name": "W", "slack_channel": "C3", "hashtags": ["jalshakti"]},
    ],
    "default_department": "water",
}


def best(text: str, hashtags: list[str] | None = None, **over: Any) -> Routing:
    cfg = parse_config({**DEPTS, **over}, "seva.yaml")
    return route(text, cfg.departments, cfg.default_department, hashtags)


def test_most_matches_win_wherever_the_department_is_listed():
    assert best("oxygen on the train, PNR 123") == Routing("railways", ("train", "PNR"))
    assert best("oxygen and a doctor on the train") == Routing("health", ("oxygen", "doctor"))


def test_a_tie_goes_to_the_department_listed_first():
    assert best("oxygen on the train").department == "health"
    flipped = {**DEPTS, "departments": DEPTS["departments"][::-1]}
    assert best("oxygen on the train", **flipped).department == "railways"


def test_a_keyword_listed_twice_counts_once():
    assert best("TRAIN late").matched == ("train",)


def test_no_match_goes_to_the_default():
    assert best("nothing relevant here") == Routing("water", ())


def test_hashtags_from_x_are_preferred_to_the_text():
    assert best("late again #railways", hashtags=[]).department == "water"
    assert best("late again", hashtags=["भारतीयरेल"]).matched == ("#भारतीयरेल",)
    assert best("late again", hashtags=["#JalShakti"]) == Routing("water", ("#jalshakti",))


def test_a_devanagari_hashtag_is_read_whole():
    assert best("बहुत देर #भारतीयरेल") == Routing("railways", ("#भारतीयरेल",))
    assert best("बहुत देर #भारतीय").department == "water"


# --- Hashtags as X reads them (cases in the manner of twitter-text's conformance/extract.yml)


@pytest.mark.parametrize(
    "text,tags",
    [
        ("train late #railways today", ["railways"]),
        ("late!#railways, so:#trains (#IRCTC) [#pnr]", ["railways", "trains", "IRCTC", "pnr"]),
        ("#railways, #trains. #IRCTC! #pnr? #tte;", ["railways", "trains", "IRCTC", "pnr", "tte"]),
        ("#one\n#two\n", ["one", "two"]),
        ("#12301late", ["12301late"]),
        ("#covid_19", ["covid_19"]),
        ("#covid-19", ["covid"]),
        ("＃भारतीयरेल", ["भारतीयरेल"]),
        ("ट्रेन लेट！＃railways", ["railways"]),
        ("#भारतीयरेल कोच गंदा", ["भारतीयरेल"]),
        ("#स्वच्छ_भारत #महाराष्ट्र२०२६", ["स्वच्छ_भारत", "महाराष्ट्र२०२६"]),
        ("ट्रेन लेट है। #रेल", ["रेल"]),
        ("#தமிழ்நாடு மழை", ["தமிழ்நாடு"]),
        ("#কলকাতা_পুলিশ সাহায্য", ["কলকাতা_পুলিশ"]),
        ("#کراچی_بجلی اور #لاہور", ["کراچی_بجلی", "لاہور"]),
        ("#ಕನ್ನಡ #తెలుగు #ਪੰਜਾਬੀ", ["ಕನ್ನಡ", "తెలుగు", "ਪੰਜਾਬੀ"]),
        ("#क्\u200dष #می\u200cخواہم", ["क्\u200dष", "می\u200cخواہم"]),
        ("🚆#railways", ["railways"]),
        ("☎\ufe0f#helpline", ["helpline"]),
        ("#refund https://t.co/abc123", ["refund"]),
    ],
)
def test_hashtags_are_read_as_x_reads_them(text, tags):
    assert extract_hashtags(text) == tags


@pytest.mark.parametrize(
    "text",
    [
        "train #12301 is late",  # digits alone are no tag
        "#१२३०१",  # nor Devanagari digits alone
        "rail#ways",  # a letter before the sign
        "रेल#ट्रेन",  # a Devanagari letter before the sign
        "रेले#ट्रेन",  # a vowel sign before the sign
        "12301#late",  # a digit before the sign
        "Tom&#jerry",  # an ampersand before the sign
        "#rail#ways",  # a tag running into another sign
        "#https://example.com",  # a URL after the sign
        "see https://example.com/#refund",  # a tag inside a URL
        "#\ufe0f\u20e3 press hash",  # the keycap emoji
        "# railways",  # a space after the sign
    ],
)
def test_no_hashtag_where_x_reads_none(text):
    assert extract_hashtags(text) == []


def test_is_hashtag_says_whether_x_reads_a_configured_tag_whole():
    for tag in ["railways", "covid19", "भारतीयरेल", "स्वच्छ_भारत", "தண்ணீர்", "ریلوے"]:
        assert is_hashtag(tag), tag
    for tag in ["covid-19", "12301", "भारतीय रेल", "", "rail.ways"]:
        assert not is_hashtag(tag), tag


# --- Normalisation


def test_precomposed_and_decomposed_nukta_letters_match_both_ways():
    # U+095C is a composition exclusion: NFC turns it into U+0921 U+093C and never back.
    assert normalise("\u095c") == normalise("\u0921\u093c") == "\u0921\u093c"
    assert find_words("स\u0921\u093cक टूटी", ["स\u095cक"]) == ("स\u095cक",)
    assert find_words("स\u095cक टूटी", ["स\u0921\u093cक"]) == ("स\u0921\u093cक",)
    # Bengali য় U+09DF the same way.
    assert find_words("আ\u09af\u09bcকর", ["আ\u09dfকর"]) == ("আ\u09dfকর",)
    assert best("देर #रेलगा\u095cी", hashtags=None, **_with_tag("रेलगा\u0921\u093cी")).matched == (
        "#रेलगा\u0921\u093cी",
    )
    assert best("देर", hashtags=["रेलगा\u0921\u093cी"], **_with_tag("रेलगा\u095cी")).matched == (
        "#रेलगा\u095cी",
    )


def _with_tag(tag: str) -> dict[str, Any]:
    depts = [{**DEPTS["departments"][0], "hashtags": [tag]}, *DEPTS["departments"][1:]]
    return {"departments": depts}


def test_case_accents_and_joiners_do_not_matter():
    assert find_words("IRCTC SITE DOWN", ["irctc"]) == ("irctc",)
    assert find_words("Cafe\u0301 closed", ["café"]) == ("café",)
    assert find_words("क्\u200dषेत्र", ["क्षेत्र"]) == ("क्षेत्र",)
    assert extract_hashtags("#IndianRailways") == ["IndianRailways"]
    assert best("late", hashtags=["RAILWAYS"]).department == "railways"
    # Folding an unnormalised sequence differs from folding its NFC form (Greek iota subscript).
    assert normalise("\u03b1\u0345\u0301") == normalise("\u1fb4")


def test_normalise_is_stable():
    for q in QUERIES:
        once = normalise(q["text"])
        assert normalise(once) == once


# --- Whole words


def test_keywords_match_whole_words_in_every_script():
    assert find_words("ट्रेनिंग के लिए", ["ट्रेन"]) == ()
    assert find_words("कृपया मदद करें", ["कर"]) == ()
    assert find_words("my business is closed", ["bus"]) == ()
    assert find_words("ट्रेन। लेट", ["ट्रेन"]) == ("ट्रेन",)
    assert find_words("(ट्रेन) #ट्रेन", ["ट्रेन"]) == ("ट्रेन",)
    assert find_words("आयकर", ["आयकर"]) == ("आयकर",)


def test_a_phrase_matches_across_any_whitespace():
    assert find_words("बिजली\n   कटौती", ["बिजली कटौती"]) == ("बिजली कटौती",)
    assert find_words("power\u00a0cut since noon", ["power cut"]) == ("power cut",)
    assert find_words("power cuts", ["power cut"]) == ()
    assert find_words("anything", ["  "]) == ()


# --- Triage


TRIAGE = Triage(urgent=["ambulance", "heart attack", "एम्बुलेंस", "அவசரம்"], ignore=["@Spam_Bot"])


def test_urgent_words_are_found_in_any_script_and_named_as_configured():
    assert urgent_words("AMBULANCE needed, एम्बुलेंस नहीं आई", TRIAGE) == ("ambulance", "एम्बुलेंस")
    assert urgent_words("heart\nattack", TRIAGE) == ("heart attack",)
    assert urgent_words("அவசரமாக", TRIAGE) == ()
    assert urgent_words("ambulances are fine now", TRIAGE) == ()


def test_ignored_accounts_in_any_case_with_or_without_at():
    assert is_ignored("spam_bot", TRIAGE)
    assert is_ignored("@SPAM_BOT", TRIAGE)
    assert not is_ignored("spam_bot2", TRIAGE)
    assert not is_ignored("citizen", Triage())


# --- Configuration


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "seva.yaml")
    return e.value.problems


def test_triage_and_urgent_escalation_default_to_off_and_five_minutes():
    cfg = parse_config(CONFIG, "seva.yaml")
    assert cfg.triage == Triage(urgent=[], ignore=[])
    assert cfg.departments[0].escalate_urgent_after == timedelta(minutes=5)
    depts = [{**CONFIG["departments"][0], "escalate_urgent_after_minutes": None}]
    cfg = parse_config({**CONFIG, "departments": depts, "default_department": "health"}, "x")
    assert cfg.departments[0].escalate_urgent_after is None


def test_triage_problems_name_the_key():
    bad = {**CONFIG, "triage": {"urgent": ["ambulance", " "], "ignore": ["not a name"]}}
    assert problems(bad) == [
        "seva.yaml: triage.urgent: ' ': expected a word or phrase",
        "seva.yaml: triage.ignore: 'not a name': expected an X username such as "
        "some_spam_account (letters, digits and '_', at most 15)",
    ]
    (p,) = problems({**CONFIG, "triage": {"urgnt": ["ambulance"]}})
    assert p == "seva.yaml: triage.urgnt: unknown key"


def test_urgent_escalation_must_be_positive():
    depts = [{**CONFIG["departments"][0], "escalate_urgent_after_minutes": 0}]
    (p,) = problems({**CONFIG, "departments": depts, "default_department": "health"})
    assert p.startswith("seva.yaml: departments[0].escalate_urgent_after_minutes: ")
    assert "greater than 0" in p


def test_a_hashtag_x_would_not_read_whole_is_a_config_error():
    depts = [{**CONFIG["departments"][0], "hashtags": ["covid-19"]}]
    (p,) = problems({**CONFIG, "departments": depts, "default_department": "health"})
    assert p.startswith("seva.yaml: departments[0].hashtags: 'covid-19': X never reads this")


# --- Properties


def _script_chars(categories: tuple[str, ...]) -> list[str]:
    blocks = [range(0x0041, 0x007B), range(0x0600, 0x0700), range(0x0900, 0x0D80)]
    return [
        chr(c)
        for block in blocks
        for c in block
        if unicodedata.category(chr(c)) in categories and c not in (0x0345,)
    ]


LETTERS = _script_chars(("Lu", "Ll", "Lo"))
MARKS = _script_chars(("Mn", "Mc"))
SYLLABLE = st.tuples(st.sampled_from(LETTERS), st.lists(st.sampled_from(MARKS), max_size=2)).map(
    lambda t: t[0] + "".join(t[1])
)
WORD = st.lists(SYLLABLE, min_size=1, max_size=4).map("".join)
FEW = settings(max_examples=200, deadline=None)


@FEW
@given(WORD, st.sampled_from([" ", "\n", "। ", ", ", "! "]), st.sampled_from(MARKS + LETTERS))
def test_a_word_matches_alone_and_never_glued_to_a_mark_or_letter(word, gap, glued):
    assert find_words(f"यह{gap}{word}{gap}है", [word]) == (word,)
    assert find_words(f"यह {word}{glued} है", [word]) == ()
    assert find_words(f"यह {glued}{word} है", [word]) == ()


@FEW
@given(st.lists(st.sampled_from(LETTERS + MARKS + [" ", "_", "#"]), max_size=30).map("".join))
def test_canonically_equal_text_normalises_alike(text):
    nfd, nfc = unicodedata.normalize("NFD", text), unicodedata.normalize("NFC", text)
    assert normalise(nfd) == normalise(nfc) == normalise(normalise(text))


@FEW
@given(WORD, st.lists(st.sampled_from(["_", "1", "१"]), max_size=2).map("".join))
def test_a_tag_of_letters_marks_digits_and_underscores_is_read_whole(word, tail):
    tag = word + tail
    assert extract_hashtags(f"देखें #{tag} अभी") == [tag]
    assert extract_hashtags(f"देखें a#{tag}") == []
