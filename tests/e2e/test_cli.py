"""The `seva` command as an operator meets it: check, migrate, and start-up refusals."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.e2e.harness import CONFIG, SEVA, TOKENS

pytestmark = pytest.mark.e2e


def seva(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SEVA_", "X_", "SLACK_", "MATRIX_"))
    }
    base.update(env or {})
    return subprocess.run(
        [str(SEVA), *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=60
    )


def test_check_lists_every_problem_with_its_key_and_exits_2(tmp_path):
    bad = {
        "x": {"poll_seconds": 15, "pol_seconds": 3},
        "departments": [
            {"id": "Health", "name": "H", "slack_channel": "C1", "matrix_room": "!r:hs"},
        ],
        "default_department": "transport",
    }
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(bad))
    out = seva("check", cwd=tmp_path, env={"SLACK_BOT_TOKEN": "replace-me-xoxb-bot-token"})
    assert out.returncode == 2
    err = out.stderr
    assert "seva.yaml: x.pol_seconds: unknown key" in err
    assert "departments[0].id: expected lower-case letters" in err
    assert "departments[0]: expected exactly one of slack_channel / matrix_room" in err
    assert "default_department: 'transport' is not one of the departments" in err
    assert "SLACK_BOT_TOKEN: still the example value" in err
    assert "X_API_KEY" in err  # missing credentials are named too
    assert "replace-me" not in err.replace("still the example value", "")


def test_check_accepts_a_good_config(tmp_path):
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(CONFIG))
    out = seva("check", cwd=tmp_path, env=TOKENS)
    assert out.returncode == 0, out.stderr
    assert "Configuration OK: 2 department(s)" in out.stdout


def test_a_department_on_an_unconfigured_platform_is_a_config_error(tmp_path):
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {k: v for k, v in TOKENS.items() if not k.startswith("SLACK_")}
    out = seva("run", "--config", "seva.yaml", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "departments[0].slack_channel" in out.stderr and "SLACK_BOT_TOKEN" in out.stderr


def test_missing_config_file_is_named(tmp_path):
    out = seva("check", "--config", "nowhere.yaml", cwd=tmp_path, env=TOKENS)
    assert out.returncode == 2
    assert "nowhere.yaml: config file not found" in out.stderr


def test_run_refuses_an_old_postgresql_schema_until_migrated(pg_url, tmp_path):
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**TOKENS, "SEVA_DATABASE_URL": pg_url}
    out = seva("run", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "seva migrate" in out.stderr
    migrated = seva("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "Database at revision" in migrated.stdout


def test_check_online_calls_each_platform(stand, tmp_path):
    from tests.e2e.harness import Stand

    assert isinstance(stand, Stand) and stand.sandbox is not None
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {
        **TOKENS,
        "X_API_BASE_URL": stand.sandbox.x_base_url,
        "SLACK_API_BASE_URL": stand.sandbox.slack_api_url,
    }
    ok = seva("check", "--online", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "X: OK, posting as @SevaHelp" in ok.stdout
    assert "X: OK, users/me limit (x-rate-limit): 74 of 75 left, resets" in ok.stdout
    assert "X: OK, the API accepts tweet.fields" in ok.stdout
    assert "Slack: OK, bot user UBOTSEVA" in ok.stdout
    assert "Slack: OK, all 9 scopes the configured features need are granted" in ok.stdout
    assert "Slack: OK, the bot is a member of #health (C0HEALTH)" in ok.stdout
    assert "Slack: OK, the bot is a member of #transport (C0TRANSPORT)" in ok.stdout
    bad = seva(
        "check", "--online", cwd=tmp_path, env={**env, "SLACK_BOT_TOKEN": "xoxb-wrong-token"}
    )
    assert bad.returncode == 2
    assert "Slack: auth.test failed (invalid_auth)" in bad.stderr
    assert "xoxb-wrong-token" not in bad.stderr + bad.stdout


def test_a_database_that_cannot_be_used_is_named_not_a_traceback(tmp_path):
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {**TOKENS, "SEVA_DATABASE_URL": "sqlite:////nonexistent-dir/seva.db"}
    out = seva("migrate", cwd=tmp_path, env=env)
    assert out.returncode == 1
    assert "cannot use the database in SEVA_DATABASE_URL" in out.stderr
    assert "Traceback" not in out.stderr
    run = seva("run", cwd=tmp_path, env=env)
    assert run.returncode == 1
    assert "cannot use the database in SEVA_DATABASE_URL" in run.stderr
    assert "Traceback" not in run.stderr and "seva.stopped" not in run.stderr
    bad = seva("check", cwd=tmp_path, env={**TOKENS, "SEVA_DATABASE_URL": "mysql://x@db/seva"})
    assert bad.returncode == 2 and "SEVA_DATABASE_URL: 'mysql' is not supported" in bad.stderr


def test_the_go_live_check_names_each_fix_and_exits_2(stand, tmp_path):
    """A department in a channel the bot was never added to, a scope not granted, and an
    API that takes only X's renamed field parameters: each is one line saying what to do."""
    import copy

    config = copy.deepcopy(CONFIG)
    config["departments"][1]["slack_channel"] = "C0RANDOM"  # the bot is not in it
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(config))
    stand.x_field_names("new")
    stand._post(
        "/slack/sandbox/config",
        {
            "scopes": [
                "chat:write",
                "commands",
                "channels:history",
                "groups:history",
                "reactions:write",
                "channels:read",
                "groups:read",
                "files:read",
            ]
        },
    )
    env = {
        **TOKENS,
        "X_API_BASE_URL": stand.sandbox.x_base_url,
        "SLACK_API_BASE_URL": stand.sandbox.slack_api_url,
    }
    out = seva("check", "--online", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "X: OK, the API accepts post.fields (the renamed fields of X's newest API spec)" in (
        out.stdout
    )
    assert (
        "Slack: FIX: scope users:read is missing, so the bot cannot tweet people's names, "
        "not their ids, and assign by name (users.info, users.list)"
    ) in out.stderr
    assert (
        "Slack: FIX: the bot is not a member of #random (C0RANDOM): type /invite @seva in "
        "that channel"
    ) in out.stderr
    assert "Slack: OK, the bot is a member of #health (C0HEALTH)" in out.stdout
    assert "2 problem(s) found." in out.stderr


def test_a_clock_file_that_holds_no_number_is_a_config_error(tmp_path):
    (tmp_path / "seva.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "clock").write_text("tomorrow\n")
    out = seva("run", cwd=tmp_path, env={**TOKENS, "SEVA_CLOCK_FILE": str(tmp_path / "clock")})
    assert out.returncode == 2
    assert "SEVA_CLOCK_FILE" in out.stderr and "expected a number of seconds" in out.stderr
