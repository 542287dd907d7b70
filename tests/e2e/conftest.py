from __future__ import annotations

import pytest

from tests.e2e.harness import Bot, Stand, WorldClock


@pytest.fixture
def stand():
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture
def bot(stand, tmp_path):
    b = Bot(stand, tmp_path).start()
    yield b
    b.kill()


@pytest.fixture(autouse=True)
def no_bot_outlives_its_test():
    yield
    for bot in list(Bot.live):
        bot.kill()


@pytest.fixture
def world(tmp_path):
    """The stand-ins on a controlled clock, which a bot started with `clock.env` shares."""
    clock = WorldClock(tmp_path / "clock")
    stand = Stand(clock=clock.timestamp).start()
    yield clock, stand
    stand.stop()
