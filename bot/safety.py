"""What must not reach X by mistake: personal data, risky replies, internal notes.

Every tweet the bot writes speaks for a department, in public, for good (SPEC section
5, "Public-post safety"). Pure: no I/O; the handlers decide what to do with the answers.

Decisions a reader would otherwise have to guess:

- Phone numbers are what `phonenumbers` calls a valid number, read as Indian first
  (`+91`, `0` or no prefix) and any `+`-prefixed international number. Short codes
  (1075, 139), years, dates, ticket numbers (#42), train numbers (12951), amounts
  (₹1,50,000) and tweet ids never are. A bare 10-digit number right after "PNR"
  (`PNR 4512345678`, `PNR no: …`) is a railway booking reference, not a phone number;
  without that word the same digits count, because a valid number is what it looks like.
- An Aadhaar number is 12 digits, first 2-9, written whole or 4-4-4 with spaces or
  hyphens, passing the Verhoeff check; a PAN is AAAAA9999A (any case) whose 4th letter
  is a holder type. Digits may be in any script (Devanagari ९ counts as 9).
- Links and @-mentions are what X would make of the text (twitter-text's rules), so a
  bare `example.com` is a link and `asha@example.com` is an e-mail address, not a mention.
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from twitter_text import extract_urls_with_indices
from twitter_text.regexp.latin_accent_chars import latin_accent_chars

from bot.config import SafetyConfig

PHONE = "phone number"
EMAIL = "e-mail address"
AADHAAR = "Aadhaar number"
PAN = "PAN"
KINDS = (PHONE, EMAIL, AADHAAR, PAN)  # the order labels are listed in


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data: its kind (a label from KINDS) and where it is."""

    kind: str
    start: int
    end: int
    text: str
    masked: str  # what an agent may be shown: enough to find it, not enough to use it


# --- Verhoeff (the Aadhaar check digit) ----------------------------------------------
# The dihedral group D5: elements 0-4 are rotations, 5-9 reflections.


def _d5(j: int, k: int) -> int:
    if j < 5:
        return (j + k) % 5 + (5 if k >= 5 else 0)
    return (j - k) % 5 + (0 if k >= 5 else 5)


_D = tuple(tuple(_d5(j, k) for k in range(10)) for j in range(10))
_INV = tuple(next(k for k in range(10) if _D[j][k] == 0) for j in range(10))
# The position permutation (1 5 8 9 4 2 7 0)(3 6), applied i times at position i.
_SIGMA = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)


def _power(times: int) -> tuple[int, ...]:
    out = tuple(range(10))
    for _ in range(times):
        out = tuple(_SIGMA[x] for x in out)
    return out


_P = tuple(_power(i) for i in range(8))


def _verhoeff(digits: str, offset: int) -> int:
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _D[check][_P[(i + offset) % 8][int(ch)]]
    return check


def verhoeff_valid(digits: str) -> bool:
    """Whether the last digit of `digits` (ASCII 0-9) is its Verhoeff check digit."""
    return digits.isascii() and digits.isdigit() and _verhoeff(digits, 0) == 0


def verhoeff_check_digit(digits: str) -> str:
    """The digit that makes `digits + it` pass `verhoeff_valid`."""
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"expected ASCII digits, got {digits!r}")
    return str(_INV[_verhoeff(digits, 1)])


# --- Personal data --------------------------------------------------------------------

_SEP = r"[ \u00a0-]"
# In a look-ahead, so every start is tried: "2024 2341 2341 2346" still shows the number.
_AADHAAR = re.compile(rf"(?<![\w+])(?=(\d{{4}}{_SEP}?\d{{4}}{_SEP}?\d{{4}})(?!\w))")
_PAN = re.compile(r"(?<!\w)[A-Z]{3}[ABCFGHJLPT][A-Z]\d{4}[A-Z](?!\w)", re.IGNORECASE)
# Possessive parts keep the time linear on hostile input ("a@a@a@…", long labels).
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]++@(?:[\w-]++\.)+[^\W\d_]{2,}(?![\w-])")
_PNR_BEFORE = re.compile(r"\bpnr(?:\s*(?:no|num|number)\b\.?)?\s*[:#.-]?\s*$", re.IGNORECASE)
_LOOKBEHIND = 24  # characters before a number searched for "PNR"


def _ascii_digits(text: str) -> str:
    """The digits of `text` in ASCII, whatever script they were written in."""
    return "".join(
        str(unicodedata.decimal(c)) for c in text if unicodedata.decimal(c, None) is not None
    )


def _mask(visible: str, keep: int = 2, hide: str = "x") -> str:
    """Keeps the first and last `keep` letters or digits, hides the rest, keeps separators."""
    positions = [i for i, c in enumerate(visible) if c.isalnum()]
    shown = set(positions[:keep] + positions[-keep:]) if len(positions) > 2 * keep else set()
    return "".join(c if i in shown or not c.isalnum() else hide for i, c in enumerate(visible))


def _mask_email(address: str) -> str:
    local, _, domain = address.rpartition("@")
    keep = min(2, len(local) // 2)
    return local[:keep] + "x" * (len(local) - keep) + "@" + domain


def _is_pnr(text: str, start: int, raw: str) -> bool:
    bare = raw.isdigit() and len(raw) == 10
    return bare and _PNR_BEFORE.search(text[max(0, start - _LOOKBEHIND) : start]) is not None


@functools.cache
def _fewest_phone_digits() -> int:
    """The fewest digits any possible number has, its country code included (from the
    library's own metadata: six, in Austria). A text with fewer holds no phone number,
    and the matcher, the slowest of these checks, is skipped."""
    fewest = []
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
            lengths = (
                [n for n in (meta.general_desc.possible_length or ()) if n > 0]
                if (meta is not None and meta.general_desc is not None)
                else []
            )
            if lengths:
                fewest.append(min(lengths) + len(str(code)))
    return min(fewest, default=1)


def _phones(text: str) -> Iterable[Finding]:
    if sum(c.isdigit() for c in text) < _fewest_phone_digits():
        return
    for match in phonenumbers.PhoneNumberMatcher(text, "IN", phonenumbers.Leniency.VALID):
        if _is_pnr(text, match.start, match.raw_string):
            continue
        national = phonenumbers.national_significant_number(match.number)
        yield Finding(PHONE, match.start, match.end, match.raw_string, _mask(national))


def _aadhaars(text: str) -> Iterable[Finding]:
    for m in _AADHAAR.finditer(text):
        digits = _ascii_digits(m.group(1))
        if digits[0] in "23456789" and verhoeff_valid(digits):
            masked = "XXXX XXXX " + digits[-4:]  # as UIDAI masks it
            yield Finding(AADHAAR, m.start(1), m.end(1), m.group(1), masked)


def _pans(text: str) -> Iterable[Finding]:
    for m in _PAN.finditer(text):
        yield Finding(PAN, m.start(), m.end(), m.group(), _mask(m.group().upper()))


def _emails(text: str) -> Iterable[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding(EMAIL, m.start(), m.end(), m.group(), _mask_email(m.group()))


def find_personal_data(text: str) -> tuple[Finding, ...]:
    """Every phone number, e-mail address, Aadhaar number and PAN in `text`, in order.

    Where two overlap (`9876543210@gmail.com` is a phone number inside an e-mail
    address) the longer one is kept, so each character belongs to one finding.
    """
    found = [*_emails(text), *_aadhaars(text), *_pans(text), *_phones(text)]
    found.sort(key=lambda f: (f.start, -(f.end - f.start), KINDS.index(f.kind)))
    kept: list[Finding] = []
    for f in found:
        if not kept or f.start >= kept[-1].end:
            kept.append(f)
        elif f.end - f.start > kept[-1].end - kept[-1].start:
            kept[-1] = f
    return tuple(kept)


def personal_data_kinds(text: str) -> tuple[str, ...]:
    """The kinds of personal data in `text`, each once, in KINDS order (for the root:
    "contains: phone number, Aadhaar number")."""
    kinds = {f.kind for f in find_personal_data(text)}
    return tuple(k for k in KINDS if k in kinds)


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def personal_data_reply(kinds: Sequence[str]) -> str:
    """The public answer to a tweet that shows personal data: delete it, go private.

    Within one tweet for any combination of kinds; it names no value, so answering
    does not repeat the data.
    """
    shown = _and([k for k in KINDS if k in kinds]) or "personal details"
    return (
        f"For your safety, please delete this post: it shows your {shown} to everyone. "
        "Never share personal details in public; if we need them, we will ask you by "
        "direct message. We are still helping you here."
    )


# --- Holds on outgoing replies -------------------------------------------------------

# twitter-text's mention rule: what may precede the @ (Python's look-behind must be
# fixed-width, so the "RT:" form is its own branch), the name, an optional list.
_MENTION = re.compile(
    r"(?:^|(?<=[^a-zA-Z0-9_!#$%&*@＠])|(?:(?<=[^a-zA-Z0-9_+~.-])|^)(?:rt|RT|rT|Rt):?)"
    r"(?P<at>[@＠])(?P<name>[a-zA-Z0-9_]{1,20})(?:/[a-zA-Z][a-zA-Z0-9_-]{0,24})?"
)
# What may not follow a mention: another @, an accented Latin letter, or "://".
_END_MENTION = re.compile(rf"[@＠{latin_accent_chars.pattern}]|://")


_RUN = re.compile(r"\S+")
_HOSTLIKE = re.compile(r"[^\s!-,/:-@\[-^`{-~]+")  # what twitter_text may read as a host
_HOST_DOTS = 8  # more dots in one host-like stretch than any real host name has
_HOST_CHARS = 253  # DNS's limit on a host name
_LONGEST_RUN = 500  # characters without a space: a longer link is rare in a reply


def _links(text: str) -> list[tuple[int, int, str]]:
    """(start, end, url) of every link X would make in `text`.

    A link never spans white space, so each run between spaces is read on its own
    (and remembered). twitter_text's URL pattern takes quadratic time on long dotted
    runs (3,000 characters of "x.x.x…" take ten seconds): such a run is not read but
    taken whole as one link, so a reply holding one is held rather than the bot
    stalled, and the agent sees why.
    """
    out: list[tuple[int, int, str]] = []
    for run in _RUN.finditer(text):
        if "." not in run.group():
            continue  # no dot, no host name, no link
        start = run.start()
        out += [(start + a, start + b, url) for a, b, url in _run_links(run.group())]
    return out


@functools.lru_cache(maxsize=1024)
def _run_links(run: str) -> tuple[tuple[int, int, str], ...]:
    if _heavy(run):
        return ((0, len(run), run),)
    return tuple(
        (e["indices"][0], e["indices"][1], e["url"]) for e in extract_urls_with_indices(run)
    )


def _heavy(run: str) -> bool:
    if len(run) > _LONGEST_RUN:
        return True
    return any(
        stretch.count(".") > _HOST_DOTS or (len(stretch) > _HOST_CHARS and "." in stretch)
        for stretch in _HOSTLIKE.findall(run)
    )


def _mentions(text: str, links: Sequence[tuple[int, int, str]]) -> tuple[str, ...]:
    if "@" not in text and "＠" not in text:
        return ()
    out: list[str] = []
    for m in _MENTION.finditer(text):
        at = m.start("at")
        if _END_MENTION.match(text, m.end()) or any(s <= at < e for s, e, _ in links):
            continue  # "@name@…", "@namé", "@http://…", or part of a link (x.com/@name)
        out.append(m.group("name"))
    return tuple(out)


def mentions(text: str) -> tuple[str, ...]:
    """The usernames X would turn into mentions (and notify), as written, in order."""
    return _mentions(text, _links(text) if "@" in text or "＠" in text else [])


def _written_host(url: str) -> str:
    if "://" not in url:
        url = "https://" + url
    return (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()


def _host(url: str) -> str:
    host = _written_host(url)
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    return host.lower()


def link_hosts(text: str) -> tuple[str, ...]:
    """The host of every link X would make in `text` (bare `example.com` too), in
    lower case and `xn--` form, in order."""
    return tuple(_host(url) for _, _, url in _links(text))


def _allowed(host: str, domains: Sequence[str]) -> bool:
    return not domains or any(host == d or host.endswith("." + d) for d in domains)


def _official(finding: Finding, official: set[str]) -> bool:
    if _ascii_digits(finding.text) in official:
        return True
    try:
        number = phonenumbers.parse(finding.text, "IN")
    except phonenumbers.NumberParseException:
        return False
    return _e164_digits(number) in official


def _e164_digits(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def _official_digits(numbers: Iterable[str]) -> set[str]:
    """Each official number as written (digits only) and in international form, so
    `011-2306 1978` in the config also covers `+91 11 2306 1978` in a reply."""
    out: set[str] = set()
    for written in numbers:
        out.add(_ascii_digits(written))
        with contextlib.suppress(phonenumbers.NumberParseException):
            out.add(_e164_digits(phonenumbers.parse(written, "IN")))
    return out


_ARTICLE = {PHONE: "a", EMAIL: "an", AADHAAR: "an", PAN: "a"}
_PLURAL = {
    PHONE: "phone numbers",
    EMAIL: "e-mail addresses",
    AADHAAR: "Aadhaar numbers",
    PAN: "PANs",
}


def _personal_reason(kind: str, found: Sequence[Finding]) -> str:
    shown = ", ".join(f.masked for f in found)
    tail = ""
    if kind == PHONE:
        tail = " that is not an official number"
        if len(found) > 1:
            tail = " that are not official numbers"
    noun = f"{_ARTICLE[kind]} {kind}" if len(found) == 1 else f"{len(found)} {_PLURAL[kind]}"
    return f"contains {noun} ({shown}){tail}"


def hold_reasons(text: str, parts: int, citizen: str, safety: SafetyConfig) -> tuple[str, ...]:
    """Why this reply must wait for an agent's confirmation; () when it may go out.

    `parts` is how many tweets the reply splits into, `citizen` the @username it
    answers (with or without the @). Each reason is a sentence an agent can act on;
    personal data is shown masked, so the reason does not spread it further.
    """
    reasons: list[str] = []
    official = _official_digits(safety.official_numbers)
    findings = [
        f for f in find_personal_data(text) if not (f.kind == PHONE and _official(f, official))
    ]
    for kind in KINDS:
        of_kind = [f for f in findings if f.kind == kind]
        if of_kind:
            reasons.append(_personal_reason(kind, of_kind))
    links = _links(text)
    if not safety.allow_mentions:
        citizen = citizen.lstrip("@＠")
        others: dict[str, str] = {}  # one entry per account, however it is capitalised
        for name in _mentions(text, links):
            if name.casefold() != citizen.casefold():
                others.setdefault(name.casefold(), name)
        if others:
            named = _and([f"@{n}" for n in others.values()])
            who = "them" if len(others) > 1 else "that account"
            reasons.append(
                f"mentions {named}, not only the citizen @{citizen}: X would notify {who}"
            )
    domains = safety.allowed_link_domains
    outside: dict[str, str] = {}
    for *_, url in links:
        host, written = _host(url), _written_host(url)
        if not _allowed(host, domains):
            # The xn-- form shows a look-alike (Cyrillic о in gоv.in) for what it is.
            shown = host if written == host else f"{written} ({host})"
            outside.setdefault(host, shown if len(shown) <= 80 else shown[:79] + "…")
    if outside:
        reasons.append(
            f"links to {_and(list(outside.values()))}, outside the allowed link domains "
            f"({', '.join(domains)})"
        )
    if parts > safety.max_reply_parts:
        reasons.append(
            f"would go out as {parts} tweets, more than the {safety.max_reply_parts} allowed "
            "without confirmation"
        )
    return tuple(reasons)


# --- Internal notes ------------------------------------------------------------------

NOTE_WORDS = ("note", "notes", "private", "internal", "नोट")
# Skipped before the word: white space, zero-width characters, `>` quotes (Slack sends
# them as &gt;) and emphasis marks. After NFKC, so full-width ＞ and ＊ are skipped too.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_LEAD = re.compile(rf"(?:[\s{_ZERO_WIDTH}>*_~`]|&gt;)*")
# Colons and dashes an agent may type after the word; NFKC has already made ： and － plain.
_SEPARATORS = ":\ua789\u2236-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_NOTE = re.compile(
    rf"(?:{'|'.join(sorted(NOTE_WORDS, key=len, reverse=True))})"
    rf"[\s{_ZERO_WIDTH}*_~`]*[{re.escape(_SEPARATORS)}]"
)


def is_internal_note(text: str) -> bool:
    """Whether an agent's thread message is an internal note, never to be tweeted.

    SPEC section 5: ignoring leading spaces, zero-width characters, `>` quotes and
    emphasis marks, it starts with note, private, internal or नोट, then optional
    spaces, then `:`, `：`, `-` or `–`, in any case. It fails closed where a reader
    would still see a note: `notes:` counts, as do the other colons and dashes
    (— ‐ − ꞉ ∶), full-width letters (ＮＯＴＥ:) and emphasis closing before the
    separator (`*note*:`). `noted, thanks`, `notebook: …`, `note 1: …` and `note`
    with no separator are not notes: the word must end where the separator begins.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    start = _LEAD.match(folded).end()  # type: ignore[union-attr]  # `*` always matches
    return _NOTE.match(folded, start) is not None
