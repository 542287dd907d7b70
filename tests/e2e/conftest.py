from __future__ import annotations

import pytest

from tests.e2e.harness import Bot, Stand


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
