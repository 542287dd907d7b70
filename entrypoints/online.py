"""`seva check --online`: one harmless call to each configured platform, by its adapter."""

from __future__ import annotations

from collections.abc import Awaitable

from bot.config import Config, Env, reveal
from bot.ports import PlatformRefused, Unavailable


async def check_online(env: Env, config: Config) -> list[str]:
    problems: list[str] = []
    problems += await _x(env)
    if env.slack_enabled:
        from adapters.slack import platform as slack

        problems += await _report(
            "Slack",
            slack.check(bot_token=reveal(env.SLACK_BOT_TOKEN), api_base_url=env.SLACK_API_BASE_URL),
        )
    if env.matrix_enabled:
        from adapters.matrix import platform as matrix

        problems += await _report(
            "Matrix",
            matrix.check(
                env.MATRIX_HOMESERVER or "",
                env.MATRIX_USER_ID or "",
                access_token=reveal(env.MATRIX_ACCESS_TOKEN) or None,
                password=reveal(env.MATRIX_PASSWORD) or None,
            ),
        )
    return problems


async def _x(env: Env) -> list[str]:
    from entrypoints.bootstrap import x_client

    client = x_client(env)
    try:
        return await _report("X", client.check())
    finally:
        client.close()


async def _report(name: str, check: Awaitable[str]) -> list[str]:
    """Prints what the check found; returns its problem, if any."""
    try:
        found = await check
    except (PlatformRefused, Unavailable) as e:
        return [f"{name}: {e}"]
    print(f"{name}: OK, {found}")
    return []
