"""The core wired to fakes of X and chat, on a fresh SQLite database."""

from __future__ import annotations

import pytest

from adapters.metrics import PrometheusMetrics
from bot.config import parse_config
from handlers.context import Bridge
from tests.conftest import migrated_store
from tests.fakes import FakeChat, FakeClock, FakeX

CONFIG = {
    "departments": [
        {
            "id": "health",
            "name": "Health",
            "slack_channel": "C0HEALTH",
            "keywords": ["oxygen", "hospital"],
            "agents": ["U0AGENT1"],
            "oncall": {
                "members": ["U0AGENT1", "U0AGENT2"],
                "shift_hours": 24,
                "starts": "2021-05-04T09:00:00+05:30",  # the morning of FakeClock's day
            },
            "escalate_after_minutes": 30,
            "escalate_to": ["U0LEAD"],
        },
        {
            "id": "transport",
            "name": "Transport",
            "slack_channel": "C0TRANSPORT",
            "hashtags": ["railways"],
            "reply_mode": "confirm",
        },
    ],
    "default_department": "health",
}


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = migrated_store(f"sqlite:///{tmp_path / 'core.db'}", clock)
    x = FakeX(clock=clock)
    chat = FakeChat(clock=clock)
    b = Bridge(
        config=parse_config(CONFIG, "test.yaml"),
        store=store,
        source=x,
        sink=x,
        platforms={"slack": chat},
        metrics=PrometheusMetrics(),
        clock=clock,
    )
    yield b, x, chat, clock
    store.dispose()
