"""Who is on call, at the edges: shift changes, time zones, daylight saving, overrides
(bot/rotation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError, Oncall, parse_config
from bot.domain import ChatUserId, DepartmentId, Override
from bot.rotation import current_and_next, localize, on_call, shift_at

A, B, C = ChatUserId("UA"), ChatUserId("UB"), ChatUserId("UC")
SEC = timedelta(seconds=1)


def rotation(starts: str, hours: float = 24, zone: str | None = None, members=(A, B)) -> Oncall:
    data = {"members": list(members), "shift_hours": hours, "starts": starts}
    if zone:
        data["timezone"] = zone
    return Oncall.model_validate(data)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- exact hours (no time zone)


def test_fixed_offset_shifts_change_on_the_second():
    r = rotation("2026-11-30T09:00:00+05:30")  # 03:30 UTC
    change = utc(2026, 12, 1, 3, 30)
    assert shift_at(r, change - SEC).member == A
    assert shift_at(r, change).member == B
    assert shift_at(r, change).starts == change
    assert shift_at(r, change).ends == change + timedelta(hours=24)
    assert shift_at(r, utc(2026, 11, 1)).member == A  # before the first shift: the first member


# --- wall-clock hours across daylight saving


def test_a_london_morning_handover_stays_at_nine_across_both_changes():
    r = rotation("2026-03-27T09:00", zone="Europe/London")  # GMT; BST from 29 March
    # Saturday 28 March 09:00 GMT = 09:00 UTC: the shift across the change starts ...
    assert shift_at(r, utc(2026, 3, 28, 9)).member == B
    # ... and lasts 23 hours: Sunday 09:00 BST is 08:00 UTC.
    assert shift_at(r, utc(2026, 3, 29, 8) - SEC).member == B
    sunday = shift_at(r, utc(2026, 3, 29, 8))
    assert sunday.member == A and sunday.starts == utc(2026, 3, 29, 8)
    assert shift_at(r, utc(2026, 3, 28, 9)).ends - shift_at(r, utc(2026, 3, 28, 9)).starts == (
        timedelta(hours=23)
    )
    # In autumn the shift across the change lasts 25 hours; 09:00 GMT is 09:00 UTC again.
    october = shift_at(r, utc(2026, 10, 24, 12))
    assert october.starts == utc(2026, 10, 24, 8)  # 09:00 BST
    assert october.ends == utc(2026, 10, 25, 9)  # 09:00 GMT
    assert shift_at(r, utc(2026, 10, 25, 9)).starts.astimezone(ZoneInfo("Europe/London")).hour == 9


def test_eight_hour_shifts_keep_their_local_hours_in_berlin():
    r = rotation("2026-03-01T06:00", hours=8, zone="Europe/Berlin", members=(A, B, C))
    berlin = ZoneInfo("Europe/Berlin")
    when = utc(2026, 3, 27)
    seen = []
    while when < utc(2026, 4, 2):
        s = shift_at(r, when)
        seen.append(s)
        when = s.ends
    assert {s.starts.astimezone(berlin).hour for s in seen} == {6, 14, 22}
    lengths = {s.ends - s.starts for s in seen}
    assert lengths == {timedelta(hours=8), timedelta(hours=7)}  # one shorter: the jump
    members = [s.member for s in seen]
    assert all(m != n for m, n in pairwise(members))  # turn by turn


def test_india_has_no_daylight_saving_so_zone_and_offset_agree():
    zoned = rotation("2026-11-30T09:00", zone="Asia/Kolkata")
    fixed = rotation("2026-11-30T09:00:00+05:30")
    for hours in range(0, 24 * 400, 7):
        when = utc(2026, 11, 30) + timedelta(hours=hours)
        assert shift_at(zoned, when) == shift_at(fixed, when)


def test_a_shift_the_clocks_skip_starts_at_the_jump():
    # New York jumps from 02:00 EST to 03:00 EDT on 8 March 2026 (07:00 UTC).
    r = rotation("2026-03-01T02:30", zone="America/New_York")
    s = shift_at(r, utc(2026, 3, 8, 12))
    assert s.starts == utc(2026, 3, 8, 7)  # 02:30 never happened: 03:00 EDT
    assert s.ends == utc(2026, 3, 9, 6, 30)  # 02:30 EDT the next night
    assert shift_at(r, utc(2026, 3, 8, 7) - SEC).starts == utc(2026, 3, 7, 7, 30)  # 02:30 EST


def test_a_time_the_clocks_repeat_means_its_first_occurrence():
    # New York falls back from 02:00 EDT to 01:00 EST on 1 November 2026 (06:00 UTC).
    r = rotation("2026-10-01T01:30", zone="America/New_York")
    s = shift_at(r, utc(2026, 11, 1, 12))
    assert s.starts == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, not 01:30 EST an hour later
    assert s.ends == utc(2026, 11, 2, 6, 30)  # 01:30 EST: a 25-hour shift


def test_shifts_shorter_than_the_jump_that_never_happen_are_skipped():
    r = rotation("2026-03-08T00:00", hours=0.5, zone="America/New_York")
    # 02:00 and 02:30 are skipped: their shifts last no time, 03:00 EDT follows 01:30 EST.
    before = shift_at(r, utc(2026, 3, 8, 7) - SEC)
    after = shift_at(r, utc(2026, 3, 8, 7))
    assert before.starts == utc(2026, 3, 8, 6, 30) and before.ends == utc(2026, 3, 8, 7)
    assert after.starts == utc(2026, 3, 8, 7) and after.ends == utc(2026, 3, 8, 7, 30)


def test_localize_at_the_edges():
    ny = ZoneInfo("America/New_York")
    assert localize(datetime(2026, 3, 8, 1, 59, 59), ny) == utc(2026, 3, 8, 6, 59, 59)
    assert localize(datetime(2026, 3, 8, 2, 0), ny) == utc(2026, 3, 8, 7)
    assert localize(datetime(2026, 3, 8, 2, 59, 59), ny) == utc(2026, 3, 8, 7)
    assert localize(datetime(2026, 3, 8, 3, 0), ny) == utc(2026, 3, 8, 7)
    assert localize(datetime(2026, 11, 1, 1, 0), ny) == utc(2026, 11, 1, 5)  # first 01:00
    assert localize(datetime(2026, 11, 1, 2, 0), ny) == utc(2026, 11, 1, 7)


ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    zone=st.sampled_from(ZONES),
    hours=st.sampled_from([0.5, 1, 6, 8, 12, 24, 72, 168]),
    start=st.datetimes(datetime(2025, 1, 1), datetime(2027, 1, 1)),
    later=st.timedeltas(timedelta(0), timedelta(days=500)),
)
def test_every_instant_lies_in_exactly_one_shift(zone, hours, start, later):
    r = rotation(start.replace(microsecond=0).isoformat(), hours=hours, zone=zone)
    when = localize(start.replace(microsecond=0), ZoneInfo(zone)) + later
    s = shift_at(r, when)
    assert s.ends is not None
    assert s.starts <= when < s.ends
    following = shift_at(r, s.ends)
    assert following.starts == s.ends  # no gap, no overlap
    assert following.member != s.member  # the next member takes over
    # A shift starts at its wall time, or (skipped) at the jump just after it.
    wall = start.replace(microsecond=0)
    n = round(
        (s.starts.astimezone(ZoneInfo(zone)).replace(tzinfo=None) - wall) / timedelta(hours=hours)
    )
    assert s.starts == localize(wall + n * timedelta(hours=hours), ZoneInfo(zone)) or (
        s.ends - s.starts <= timedelta(hours=hours + 2)
    )


# --- overrides

R = rotation("2026-12-01T09:00:00+05:30")  # 03:30 UTC; A on the 1st, B on the 2nd
DEPT = DepartmentId("health")


def override(i: int, who: ChatUserId, starts: datetime, ends: datetime) -> Override:
    return Override(i, DEPT, who, starts, ends, ChatUserId("ULEAD"))


def test_an_override_covers_part_of_a_shift_and_the_rotation_resumes():
    o = override(1, C, utc(2026, 12, 1, 8), utc(2026, 12, 1, 12))
    before = on_call(R, [o], utc(2026, 12, 1, 7))
    assert before is not None and before.member == A
    assert (before.starts, before.ends) == (utc(2026, 12, 1, 3, 30), utc(2026, 12, 1, 8))
    during = on_call(R, [o], utc(2026, 12, 1, 8))
    assert during is not None and (during.member, during.override, during.by) == (C, 1, "ULEAD")
    assert (during.starts, during.ends) == (o.starts, o.ends)
    after = on_call(R, [o], utc(2026, 12, 1, 12))
    assert after is not None and after.member == A
    assert (after.starts, after.ends) == (utc(2026, 12, 1, 12), utc(2026, 12, 2, 3, 30))
    now, nxt = current_and_next(R, [o], utc(2026, 12, 1, 9))
    assert now is not None and nxt is not None
    assert (now.member, nxt.member, nxt.starts) == (C, A, utc(2026, 12, 1, 12))


def test_the_newest_override_wins_where_two_overlap():
    old = override(1, B, utc(2026, 12, 1, 6), utc(2026, 12, 1, 18))
    new = override(2, C, utc(2026, 12, 1, 10), utc(2026, 12, 1, 12))
    at = {h: on_call(R, [old, new], utc(2026, 12, 1, h)) for h in (7, 10, 11, 12, 17, 18)}
    assert {h: s.member for h, s in at.items() if s} == {7: B, 10: C, 11: C, 12: B, 17: B, 18: A}
    assert (at[7].starts, at[7].ends) == (utc(2026, 12, 1, 6), utc(2026, 12, 1, 10))
    assert (at[12].starts, at[12].ends) == (utc(2026, 12, 1, 12), utc(2026, 12, 1, 18))
    # the same stretch, whenever in it one asks: the hand-off key stays the same
    assert on_call(R, [old, new], utc(2026, 12, 1, 15)) == at[12]


def test_an_override_across_a_shift_change_outlasts_it():
    o = override(1, C, utc(2026, 12, 2, 1), utc(2026, 12, 2, 6))  # over the 03:30 change
    s = on_call(R, [o], utc(2026, 12, 2, 4))
    assert s is not None and s.member == C
    resumed = on_call(R, [o], utc(2026, 12, 2, 6))
    assert resumed is not None and resumed.member == B and resumed.starts == utc(2026, 12, 2, 6)


def test_without_a_rotation_only_an_override_puts_anyone_on_call():
    o = override(1, C, utc(2026, 12, 1, 8), utc(2026, 12, 1, 12))
    assert on_call(None, [o], utc(2026, 12, 1, 7)) is None
    now, nxt = current_and_next(None, [o], utc(2026, 12, 1, 9))
    assert now is not None and now.member == C and nxt is None


# --- the config keys


def config_with(oncall: dict) -> list[str]:
    data = {
        "departments": [{"id": "health", "name": "H", "slack_channel": "C1", "oncall": oncall}],
        "default_department": "health",
    }
    try:
        parse_config(data, "seva.yaml")
    except ConfigError as e:
        return e.problems
    return []


def test_zone_keys_are_checked_and_named():
    ok = {"members": ["U1"], "starts": "2026-03-27T09:00", "timezone": "Europe/London"}
    assert config_with(ok) == []
    assert config_with({**ok, "starts": "2026-07-01T09:00+01:00"}) == []  # BST: fine
    (p,) = config_with({**ok, "timezone": "Asia/Kolkatta"})
    assert "departments[0].oncall.timezone: 'Asia/Kolkatta': unknown time zone" in p
    (p,) = config_with({**ok, "starts": "2026-07-01T09:00+05:30"})
    assert p.startswith("seva.yaml: departments[0].oncall.starts: ")
    assert "+05:30 is not Europe/London's UTC offset at that time (+01:00)" in p
    (p,) = config_with({"members": ["U1"], "starts": "2026-07-01T09:00"})
    assert "oncall.starts" in p and "UTC offset" in p and "oncall.timezone" in p
    (p,) = config_with({**ok, "slack_usergroup": "health-oncall"})
    assert "oncall.slack_usergroup: 'health-oncall': expected a Slack user group id" in p
