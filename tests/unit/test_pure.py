"""Pure logic: routing, on-call arithmetic, configuration errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.config import ConfigError, Env, parse_config
from bot.rotation import current_and_next, shift_at
from bot.routing import route
from tests.unit.conftest import CONFIG


def cfg(**over):
    data = {**CONFIG, **over}
    return parse_config(data, "seva.yaml")


@pytest.mark.parametrize(
    "text,dept",
    [
        ("@SevaHelp need OXYGEN now", "health"),
        ("@SevaHelp which Hospital has beds", "health"),
        ("@SevaHelp train late #railways", "transport"),
        ("@SevaHelp train late #RAILWAYS!", "transport"),
        ("@SevaHelp hospitality industry question", "health"),  # the default, not 'hospital'
        ("@SevaHelp nothing matches", "health"),
    ],
)
def test_route(text, dept):
    c = cfg()
    assert route(text, c.departments, c.default_department).department == dept


def test_route_first_match_wins_and_words_are_bounded():
    c = cfg(default_department="transport")
    assert route("oxygen on the train #railways", c.departments, "transport").department == "health"
    assert route("hospitals", c.departments, "transport").department == "transport"
    assert route("the HOSPITAL", c.departments, "transport").department == "health"


def test_oncall_rotation():
    rotation = cfg().departments[0].oncall
    assert rotation is not None
    start = rotation.starts
    assert shift_at(rotation, start).member == "U0AGENT1"
    assert shift_at(rotation, start.replace(hour=8)).member == "U0AGENT1"  # before the first shift
    day2 = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # 09:30 IST on the 1st: second shift
    cur, nxt = current_and_next(rotation, [], day2)
    assert cur is not None and nxt is not None
    assert (cur.member, nxt.member) == ("U0AGENT2", "U0AGENT1")
    assert cur.ends == nxt.starts
    assert shift_at(rotation, datetime(2026, 12, 2, 4, 0, tzinfo=UTC)).member == "U0AGENT1"


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "seva.yaml")
    return e.value.problems


def test_unknown_key_is_an_error_naming_it():
    (p,) = problems({**CONFIG, "x": {"poll_seconds": 5, "pol_seconds": 5}})
    assert p == "seva.yaml: x.pol_seconds: unknown key"


def test_every_problem_is_listed_with_its_location():
    bad = {
        "departments": [
            {"id": "Health!", "name": "H", "slack_channel": "C1", "matrix_room": "!a:b"},
            {"id": "ok", "name": "O", "hashtags": ["#covid"], "slack_channel": "C2"},
        ],
        "default_department": "nope",
    }
    ps = problems(bad)
    joined = "\n".join(ps)
    assert "departments[0].id: expected lower-case letters" in joined
    assert "departments[0]: expected exactly one of slack_channel / matrix_room" in joined
    assert "departments[1].hashtags: '#covid': write hashtags without '#'" in joined


def test_default_department_must_exist():
    ps = problems({**CONFIG, "default_department": "nope"})
    assert any("default_department: 'nope' is not one of the departments" in p for p in ps)


def test_oncall_start_needs_an_offset():
    dept = {**CONFIG["departments"][0], "oncall": {"members": ["U1"], "starts": "2026-11-30T09:00"}}
    ps = problems({**CONFIG, "departments": [dept]})
    assert any("departments[0].oncall.starts" in p and "UTC offset" in p for p in ps)


def test_env_example_values_are_refused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for k in ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"):
        monkeypatch.setenv(k, "real-value-123")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "replace-me-xoxb-bot-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret-signing")
    env = Env(_env_file=None)  # type: ignore[call-arg]
    assert env.problems() == [
        "environment: SLACK_BOT_TOKEN: still the example value from .env.example"
    ]
