"""Two `seva run` processes sharing one PostgreSQL database share the work exactly once."""

from __future__ import annotations

import copy
import subprocess
import time

import pytest

from tests.e2e.harness import CONFIG, SEVA, Bot, Stand, wait_for
from tests.e2e.test_restart import roots_by_tweet

pytestmark = pytest.mark.e2e


def test_two_instances_on_one_postgresql(stand: Stand, pg_url, tmp_path):
    config = copy.deepcopy(CONFIG)
    config["x"]["poll_seconds"] = 0.1  # both poll all the time, so they race for every page
    env = {"SEVA_DATABASE_URL": pg_url}
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a = Bot(stand, a_dir, config, env)
    migrated = subprocess.run(
        [str(SEVA), "migrate"], env=a.env(), cwd=a_dir, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    a.start()
    b = Bot(stand, b_dir, config, env).start()  # Slack delivers events to this one
    try:
        ids = [stand.tweet(f"c{i}", f"@SevaHelp oxygen bed {i}")["id"] for i in range(40)]
        wait_for("forty roots", lambda: len(roots_by_tweet(stand)) == 40, timeout=30)
        roots = sorted(
            stand.roots("C0HEALTH"), key=lambda m: m["metadata"]["event_payload"]["ticket"]
        )
        for i, root in enumerate(roots[:5]):
            stand.say("U0AGENT1", "C0HEALTH", f"Answer {i}.", root["ts"])
        wait_for("five replies", lambda: len(stand.bot_tweets()) == 5, timeout=30)
        time.sleep(1.0)  # many polls and delivery rounds of both instances later
        roots = roots_by_tweet(stand)
        assert sorted(roots) == sorted(ids), "every mention has a root, and only mentions do"
        assert all(len(v) == 1 for v in roots.values()), "no mention has two roots"
        assert len({n for v in roots.values() for n in v}) == 40, "one ticket number each"
        assert sorted(t["text"] for t in stand.bot_tweets()) == [f"Answer {i}." for i in range(5)]
        # Only one instance polls at a time (the lease). Kill -9 one of them: whichever
        # it was, the other polls on (at the latest once the dead one's lease ran out).
        a.kill()
        late = [stand.tweet(f"l{i}", f"@SevaHelp oxygen late {i}")["id"] for i in range(5)]
        wait_for("the late roots", lambda: len(roots_by_tweet(stand)) == 45, timeout=30)
        assert sorted(roots_by_tweet(stand)) == sorted(ids + late)
    finally:
        a.kill()
        b.kill()
