"""`seva check --online`: the go-live check, each adapter saying its part.

Every line is either ok or a fix in plain words; any fix makes the check fail (exit 2).
The calls are harmless: nothing is posted, tweeted or changed.
"""

from __future__ import annotations

from collections.abc import Awaitable

from bot.config import Config, Env, reveal
from bot.ports import CheckLine, PlatformRefused, Unavailable


async def check_online(env: Env, config: Config) -> list[str]:
    """Prints what each platform's check found; returns the problems."""
    problems: list[str] = []
    problems += await _x(env)
    if env.slack_enabled:
        from adapters.slack import platform as slack

        channels = [d.channel for d in config.departments if d.platform == "slack"]
        problems += await _report(
            "Slack",
            slack.check(
                bot_token=reveal(env.SLACK_BOT_TOKEN),
                api_base_url=env.SLACK_API_BASE_URL,
                channels=list(dict.fromkeys(channels)),
                features=_optional_slack_features(config),
            ),
        )
    if env.matrix_enabled:
        from adapters.matrix import platform as matrix

        rooms = [d.channel for d in config.departments if d.platform == "matrix"]
        problems += await _report(
            "Matrix",
            matrix.check(
                env.MATRIX_HOMESERVER or "",
                env.MATRIX_USER_ID or "",
                access_token=reveal(env.MATRIX_ACCESS_TOKEN) or None,
                password=reveal(env.MATRIX_PASSWORD) or None,
                rooms=list(dict.fromkeys(rooms)),
            ),
        )
    return problems


def _optional_slack_features(config: Config) -> set[str]:
    """The optional features (adapters/slack/scopes.py `when`) this config switches on."""
    enabled: set[str] = set()
    for dept in config.departments:
        if getattr(dept.oncall, "slack_usergroup", None):
            enabled.add("oncall_usergroup")
    if getattr(config, "digest", None) is not None:
        enabled.add("digest")
    return enabled


async def _x(env: Env) -> list[str]:
    from entrypoints.bootstrap import x_client

    client = x_client(env)
    try:
        return await _report("X", client.check())
    finally:
        client.close()


async def _report(name: str, check: Awaitable[list[CheckLine]]) -> list[str]:
    """Prints each line (ok lines to stdout); returns the fixes."""
    try:
        lines = await check
    except (PlatformRefused, Unavailable) as e:
        return [f"{name}: {e}"]
    problems = []
    for line in lines:
        if line.ok:
            print(f"{name}: OK, {line.text}")
        else:
            problems.append(f"{name}: FIX: {line.text}")
    return problems
