"""Public-post safety: personal data, holds on risky replies, internal notes (issue 12)."""

from __future__ import annotations

import itertools

import pytest

from bot.config import ConfigError, SafetyConfig, parse_config
from bot.safety import (
    AADHAAR,
    EMAIL,
    KINDS,
    PAN,
    PHONE,
    find_personal_data,
    hold_reasons,
    is_internal_note,
    link_hosts,
    mentions,
    personal_data_kinds,
    personal_data_reply,
    verhoeff_check_digit,
    verhoeff_valid,
)
from bot.tweettext import fits
from tests.unit.conftest import CONFIG

VALID_AADHAAR = "234123412346"  # python-stdnum's example; the same with a last 7 is not


# --- Verhoeff ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,check",
    [("236", "3"), ("12345", "1"), ("123456789012", "0"), ("23412341234", "6")],
)
def test_check_digits_match_the_published_examples(body: str, check: str) -> None:
    assert verhoeff_check_digit(body) == check
    assert verhoeff_valid(body + check)


@pytest.mark.parametrize("number", ["2364", "123452", "234123412347", "", "12a4", "२३६३"])
def test_wrong_or_malformed_numbers_fail_the_check(number: str) -> None:
    assert not verhoeff_valid(number)


def test_every_single_typo_and_swap_of_neighbours_is_caught() -> None:
    """What Verhoeff is for: a mistyped Aadhaar number never passes as another."""
    digits = list(VALID_AADHAAR)
    for i, wrong in itertools.product(range(12), "0123456789"):
        if wrong != digits[i]:
            typo = digits.copy()
            typo[i] = wrong
            assert not verhoeff_valid("".join(typo)), "".join(typo)
    for i in range(11):
        if digits[i] != digits[i + 1]:
            swapped = digits.copy()
            swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
            assert not verhoeff_valid("".join(swapped)), "".join(swapped)


# --- Personal data: what a root says the tweet contains ----------------------------


@pytest.mark.parametrize(
    "text",
    [
        "my aadhaar 2341 2341 2346 please help",
        "Aadhaar: 2341-2341-2346.",
        "234123412346",
        "2024 2341 2341 2346",  # after another group of four digits
        "आधार २३४१ २३४१ २३४६",  # Devanagari digits
    ],
)
def test_aadhaar_numbers_are_found_and_masked_like_uidai(text: str) -> None:
    (found,) = find_personal_data(text)
    assert found.kind == AADHAAR
    assert found.masked == "XXXX XXXX 2346"


@pytest.mark.parametrize(
    "text",
    [
        "2341 2341 2347",  # fails the check digit
        "2341 2341 234",  # 11 digits
        "123412341234"[:11] + verhoeff_check_digit("12341234123"),  # starts with 1
        "02341234123" + verhoeff_check_digit("02341234123"),  # starts with 0
        "9" + VALID_AADHAAR,  # part of a longer number
        "2341 2341 23467",  # ditto
    ],
)
def test_twelve_digits_that_cannot_be_aadhaar_are_not_called_aadhaar(text: str) -> None:
    """(A valid number followed by a separate digit, "2341 2341 2346 7", still counts.)"""
    assert AADHAAR not in personal_data_kinds(text)


@pytest.mark.parametrize("pan", ["ABCPE1234F", "abcpe1234f", "AAACB1234C", "AAAGT1234Z"])
def test_pans_are_found(pan: str) -> None:
    (found,) = find_personal_data(f"My PAN is {pan}.")
    assert (found.kind, found.text) == (PAN, pan)
    assert found.masked.startswith(pan[:2].upper()) and "1234" not in found.masked


@pytest.mark.parametrize(
    "text",
    ["ABCDE1234F", "ABCPE12345", "XABCPE1234F", "ABCPE1234FG", "ABC1E1234F", "ABCPE-1234-F"],
)
def test_pan_lookalikes_are_not_pans(text: str) -> None:
    """The 4th letter must be a holder type (D is not one), and the code a word of its own."""
    assert PAN not in personal_data_kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "call 9876543210",
        "+91 98765 43210",
        "+91-98765-43210",
        "+919876543210",
        "919876543210",
        "098765 43210",
        "0 98765 43210",
        "98765-43210",
        "(98765) 43210",
        "reach me at ९८७६५४३२१०",
        "९८७६५४३२१० ",
    ],
)
def test_indian_mobile_numbers_are_found_and_masked(text: str) -> None:
    (found,) = find_personal_data(text)
    assert found.kind == PHONE
    assert found.masked == "98xxxxxx10"


@pytest.mark.parametrize(
    "text,masked",
    [
        ("office 011-23061978", "11xxxxxx78"),
        ("office 011 2306 1978", "11xxxxxx78"),
        ("(0120) 4567890", "12xxxxxx90"),
        ("080-2222 3333", "80xxxxxx33"),
        ("toll free 1800-11-4000", "18xxxxxx00"),
        ("UK +44 20 7946 0958", "20xxxxxx58"),
        ("US +1 202 555 0143", "20xxxxxx43"),
    ],
)
def test_landlines_toll_free_and_international_numbers_are_found(text: str, masked: str) -> None:
    (found,) = find_personal_data(text)
    assert (found.kind, found.masked) == (PHONE, masked)


@pytest.mark.parametrize(
    "text",
    [
        "Ticket #42 is closed",
        "#42",
        "since 2024",
        "on 12/03/2024 at 10:30",
        "2024-03-12",
        "12.03.2024",
        "open 10:00-17:00",
        "₹1,50,000 was deducted",
        "Rs. 2,00,000/-",
        "Rs 150000",
        "tweet 1790123456789012345",
        "https://x.com/asha/status/1790123456789012345",
        "train 12951 is late",
        "12951 Mumbai Rajdhani",
        "PNR 4512345678",
        "PNR: 4512345678",
        "pnr no. 4512345678",
        "PNR number 8512345678",
        "helpline 1075",
        "call 139",
        "coach B4 berth 32",
    ],
)
def test_numbers_that_are_not_personal_data(text: str) -> None:
    assert find_personal_data(text) == ()


def test_a_bare_ten_digit_number_counts_as_a_phone_number_without_the_word_pnr() -> None:
    """A valid Indian landline looks like this; only "PNR" before it says otherwise."""
    assert personal_data_kinds("my number 4512345678") == (PHONE,)


@pytest.mark.parametrize(
    "text,address",
    [
        ("mail asha.k@gmail.com", "asha.k@gmail.com"),
        ("ASHA@EXAMPLE.CO.IN please", "ASHA@EXAMPLE.CO.IN"),
        ("a+tag@sub.example.org", "a+tag@sub.example.org"),
        ("write to asha@gmail.com.", "asha@gmail.com"),
        ("<asha_99@yahoo.in>", "asha_99@yahoo.in"),
    ],
)
def test_email_addresses_are_found(text: str, address: str) -> None:
    (found,) = find_personal_data(text)
    assert (found.kind, found.text) == (EMAIL, address)
    assert found.masked.endswith(address[address.index("@") :])
    assert address.split("@")[0] not in found.masked


@pytest.mark.parametrize("text", ["@asha", "asha@", "user@localhost", "a@b", "x @ y.com"])
def test_email_lookalikes_are_not_email_addresses(text: str) -> None:
    assert EMAIL not in personal_data_kinds(text)


def test_a_phone_number_inside_an_email_address_is_reported_once_as_the_address() -> None:
    (found,) = find_personal_data("9876543210@gmail.com")
    assert found.kind == EMAIL


def test_a_upi_id_with_a_mobile_number_shows_the_number() -> None:
    assert personal_data_kinds("pay 9876543210@ybl") == (PHONE,)


def test_kinds_are_listed_once_each_in_a_fixed_order() -> None:
    text = "PAN ABCPE1234F, asha@gmail.com, 9876543210, 9876543211, 2341 2341 2346"
    assert personal_data_kinds(text) == (PHONE, EMAIL, AADHAAR, PAN)
    assert [f.kind for f in find_personal_data(text)] == [PAN, EMAIL, PHONE, PHONE, AADHAAR]


@pytest.mark.parametrize("n", range(1, len(KINDS) + 1))
def test_the_reply_to_a_tweet_with_personal_data_fits_one_tweet(n: int) -> None:
    for kinds in itertools.combinations(KINDS, n):
        text = personal_data_reply(kinds)
        assert fits(text)
        assert all(k in text for k in kinds)
        assert "delete" in text and "direct message" in text


# --- Holds on outgoing replies ----------------------------------------------------


def safety(**settings: object) -> SafetyConfig:
    return SafetyConfig.model_validate(settings)


def held(text: str, parts: int = 1, citizen: str = "@Asha", **settings: object) -> tuple[str, ...]:
    return hold_reasons(text, parts, citizen, safety(**settings))


def test_an_ordinary_reply_goes_out() -> None:
    assert held("@Asha Oxygen is available at AIIMS from 9am, ticket #42, call 1075.") == ()


def test_a_phone_number_holds_the_reply_and_the_reason_masks_it() -> None:
    (reason,) = held("Please call Dr Rao on 98765 43210 today")
    assert reason == "contains a phone number (98xxxxxx10) that is not an official number"
    assert "43210" not in reason


def test_several_phone_numbers_are_listed_in_one_reason() -> None:
    (reason,) = held("try 9876543210 or 9123456780")
    assert reason.startswith("contains 2 phone numbers (98xxxxxx10, 91xxxxxx80)")
    (reason,) = held("write to asha@gmail.com or ravi@gmail.com")
    assert reason == "contains 2 e-mail addresses (asxx@gmail.com, raxx@gmail.com)"


@pytest.mark.parametrize(
    "reply,official",
    [
        ("Call 1075 or 139", []),
        ("Call 1075", ["1075"]),
        ("Call +91 11 2306 1978", ["011-23061978"]),
        ("Call 011 2306 1978", ["+91 11 2306 1978"]),
        ("Call 1800 11 4000", ["1800-11-4000"]),
        ("Call +91-1800-11-4000", ["1800114000"]),
    ],
)
def test_official_numbers_go_out_however_they_are_written(reply: str, official: list[str]) -> None:
    assert held(reply, official_numbers=official) == ()


def test_an_unlisted_helpline_is_held() -> None:
    assert held("Call 1800-11-4000", official_numbers=["1075"]) != ()


@pytest.mark.parametrize(
    "reply,reason",
    [
        ("Mail asha.k@gmail.com", "contains an e-mail address (asxxxx@gmail.com)"),
        ("Your Aadhaar 2341 2341 2346 is linked", "contains an Aadhaar number (XXXX XXXX 2346)"),
        ("PAN ABCPE1234F is fine", "contains a PAN (ABxxxxxx4F)"),
    ],
)
def test_other_personal_data_holds_the_reply(reply: str, reason: str) -> None:
    assert held(reply) == (reason,)


def test_mentioning_the_citizen_is_fine_in_any_case() -> None:
    assert held("@asha thanks, and thank you @ASHA") == ()
    assert held("thanks @Asha", citizen="Asha") == ()


def test_mentioning_someone_else_holds_the_reply() -> None:
    assert held("@Asha please ask @RailMinIndia and @railminindia") == (
        "mentions @RailMinIndia, not only the citizen @Asha: X would notify that account",
    )
    assert held("cc @a_b, @Cd") == (
        "mentions @a_b and @Cd, not only the citizen @Asha: X would notify them",
    )


def test_mentions_may_be_allowed() -> None:
    assert held("please ask @RailMinIndia", allow_mentions=True) == ()


@pytest.mark.parametrize(
    "text,names",
    [
        ("@username reply", ("username",)),
        ("RT@a RT:@b rt @c", ("a", "b", "c")),
        ("の@usernameに", ("username",)),
        ("full-width ＠someone", ("someone",)),
        ("Current Status: @_@ (cc: @username)", ("username",)),
        ("@username email me @test@example.com", ("username",)),
        ("mail asha@example.com", ()),
        ("@aliceìnheiro", ()),
        ("@http://twitter.com", ()),
        ("f!@kn f#@kn f&@kn", ()),
        ("see https://medium.com/@author", ()),
    ],
)
def test_mentions_are_what_x_would_link(text: str, names: tuple[str, ...]) -> None:
    """twitter-text's conformance cases: the accounts X would notify."""
    assert mentions(text) == names


def test_an_email_address_is_not_a_mention() -> None:
    assert held("write to help@mohfw.gov.in") == ("contains an e-mail address (hexx@mohfw.gov.in)",)


@pytest.mark.parametrize(
    "reply",
    [
        "see https://mohfw.gov.in/beds",
        "see mohfw.gov.in",
        "see HTTPS://WWW.MOHFW.GOV.IN/x?y=1",
        "see gov.in",
        "Rs.500 and 1.5 lakh, e.g. soon",  # not links
    ],
)
def test_links_inside_the_allowed_domains_go_out(reply: str) -> None:
    assert held(reply, allowed_link_domains=["gov.in"]) == ()


@pytest.mark.parametrize(
    "reply,host",
    [
        ("see https://evil.example.com/x", "evil.example.com"),
        ("see example.com", "example.com"),
        ("see notgov.in", "notgov.in"),
        ("see gov.in.evil.com/x", "gov.in.evil.com"),
        ("see t.co/abc", "t.co"),
        ("see http://✪df.ws/ejp", "✪df.ws (xn--df-oiy.ws)"),
        ("see https://gоv.in/x", "gоv.in (xn--gv-fmc.in)"),  # a Cyrillic о
    ],
)
def test_links_elsewhere_hold_the_reply(reply: str, host: str) -> None:
    assert held(reply, allowed_link_domains=["gov.in", "nic.in"]) == (
        f"links to {host}, outside the allowed link domains (gov.in, nic.in)",
    )


def test_any_link_goes_out_when_no_domains_are_listed() -> None:
    assert held("see https://evil.example.com and bit.ly/x") == ()


def test_link_hosts_are_compared_in_their_ascii_form() -> None:
    assert link_hosts("https://सेवा.भारत/x and EXAMPLE.COM.") == (
        "xn--y2bft8a.xn--h2brj9c",
        "example.com",
    )
    assert held("https://सेवा.भारत/x", allowed_link_domains=["सेवा.भारत"]) == ()


def test_a_long_chain_holds_the_reply() -> None:
    assert held("x", parts=4) == ()
    assert held("x", parts=5) == (
        "would go out as 5 tweets, more than the 4 allowed without confirmation",
    )
    assert held("x", parts=2, max_reply_parts=1) != ()


def test_every_reason_is_given_in_a_fixed_order() -> None:
    reasons = held(
        "PAN ABCPE1234F, call 9876543210, cc @Other, see evil.com",
        parts=9,
        allowed_link_domains=["gov.in"],
    )
    assert [r.split(" ")[0:2] for r in reasons] == [
        ["contains", "a"],
        ["contains", "a"],
        ["mentions", "@Other,"],
        ["links", "to"],
        ["would", "go"],
    ]
    assert "phone number" in reasons[0] and "PAN" in reasons[1]


# --- Internal notes (the property tests are in test_note_properties.py) -------------


@pytest.mark.parametrize(
    "text",
    [
        "NOTE : checking",
        "*note:*",
        "Note：",
        "note - asked the hospital",
        "नोट: अस्पताल से पूछा",
        "note: x",
        "Private: x",
        "internal – x",
        "  > note: quoted",
        "&gt; &gt; note: quoted twice as Slack sends it",
        "\u200b\ufeffnote: behind zero-width characters",
        "_~`private`~_: x",
        "*note*: emphasis closed before the colon",
        "notes: plural",
        "note — em dash",
        "NOTE−minus sign",
        "ＮＯＴＥ： full width",
        "＞ note: full-width quote",
        "note\n: on the next line",
    ],
)
def test_internal_notes(text: str) -> None:
    assert is_internal_note(text)


@pytest.mark.parametrize(
    "text",
    [
        "noted, thanks",
        "Note the office opens at 10",
        "notebook: x",
        "note 1: x",
        "note",
        "Please note: the office opens at 10",
        "privately: x",
        "nota: x",
        "नोटिस: x",
        "• note: a bullet is not skipped",
        "(note: x)",
        "",
        "Oxygen is available at AIIMS",
    ],
)
def test_not_internal_notes(text: str) -> None:
    assert not is_internal_note(text)


# --- Configuration -----------------------------------------------------------------


def test_safety_defaults_hold_every_risk_but_links() -> None:
    config = parse_config(CONFIG, "seva.yaml")
    assert config.safety == SafetyConfig(
        official_numbers=[],
        max_reply_parts=4,
        allow_mentions=False,
        allowed_link_domains=[],
        retention_days=None,
    )
    assert config.supervisors == []


def test_safety_settings_are_read_and_domains_lower_cased() -> None:
    config = parse_config(
        {
            **CONFIG,
            "safety": {
                "official_numbers": ["1075", "+91 11 2306 1978"],
                "max_reply_parts": 2,
                "allow_mentions": True,
                "allowed_link_domains": ["Gov.IN", "mohfw.gov.in."],
                "retention_days": 90,
            },
            "supervisors": ["U0LEAD"],
        },
        "seva.yaml",
    )
    assert config.safety.allowed_link_domains == ["gov.in", "mohfw.gov.in"]
    assert config.safety.official_numbers == ["1075", "+91 11 2306 1978"]
    assert (config.safety.max_reply_parts, config.safety.retention_days) == (2, 90)
    assert config.supervisors == ["U0LEAD"]


@pytest.mark.parametrize(
    "safety_block,problem",
    [
        ({"max_reply_parts": 0}, "safety.max_reply_parts: Input should be greater than"),
        ({"retention_days": 0}, "safety.retention_days: Input should be greater than"),
        (
            {"allowed_link_domains": ["gov.in", "https://gov.in"]},
            "safety.allowed_link_domains[1]: 'https://gov.in': expected a host name",
        ),
        ({"allowed_link_domains": ["localhost"]}, "safety.allowed_link_domains[0]"),
        ({"allowed_link_domains": ["gov.in/x"]}, "safety.allowed_link_domains[0]"),
        ({"official_numbers": [1075]}, "safety.official_numbers[0]: 1075: write phone numbers"),
        ({"official_numbers": ["helpline"]}, "safety.official_numbers[0]: 'helpline'"),
        ({"retain_days": 3}, "safety.retain_days: unknown key"),
    ],
)
def test_safety_errors_name_the_key(safety_block: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**CONFIG, "safety": safety_block}, "seva.yaml")
    assert any(p.startswith(f"seva.yaml: {problem}") for p in err.value.problems), err.value


@pytest.mark.parametrize(
    "text",
    ["ring +683 4002 now", "Vienna office +43 1 5878", "St Helena +290 22001", "98765 43210"],
)
def test_the_shortest_numbers_the_world_dials_are_still_found(text: str) -> None:
    """The matcher is skipped for a text with fewer digits than any possible number
    has; the shortest real ones (seven digits with their country code) still count."""
    from bot.safety import _fewest_phone_digits

    assert _fewest_phone_digits() <= 6
    assert [f.kind for f in find_personal_data(text)] == [PHONE]
