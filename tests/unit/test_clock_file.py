"""The controlled clock's file (adapters/clock.py): how the sandbox and the end-to-end
tests move the real process through time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from adapters.clock import ClockFileError, OffsetClock, read_offset, write_offset


def test_no_file_means_the_system_clock(tmp_path):
    clock = OffsetClock(tmp_path / "clock")
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_each_change_of_the_file_is_seen_at_once(tmp_path):
    path = tmp_path / "clock"
    clock = OffsetClock(path)
    for days in (1, 2, 2.5, -1):
        write_offset(path, days * 86400)
        ahead = clock.now() - datetime.now(UTC)
        assert abs(ahead - timedelta(days=days)) < timedelta(seconds=5)
    assert abs(clock.timestamp() - (datetime.now(UTC) - timedelta(days=1)).timestamp()) < 5


def test_a_garbled_file_keeps_the_last_good_offset_and_says_so(tmp_path, caplog):
    path = tmp_path / "clock"
    write_offset(path, 3600)
    clock = OffsetClock(path)
    path.write_text("soon")
    with caplog.at_level(logging.ERROR):
        ahead = clock.now() - datetime.now(UTC)
    assert abs(ahead - timedelta(hours=1)) < timedelta(seconds=5)
    assert "clock.unreadable" in caplog.text


@pytest.mark.parametrize("text", ["soon", "nan", "inf", ""])
def test_anything_but_a_finite_number_is_refused_at_start(tmp_path, text):
    path = tmp_path / "clock"
    path.write_text(text)
    with pytest.raises(ClockFileError):
        read_offset(path)
    with pytest.raises(ClockFileError):
        OffsetClock(path)
