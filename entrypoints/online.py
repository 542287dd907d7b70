"""`seva check --online`: one harmless call to each configured platform."""

from __future__ import annotations

from bot.config import Config, Env, reveal


async def check_online(env: Env, config: Config) -> list[str]:
    problems: list[str] = []
    problems += await _x(env)
    if env.slack_enabled:
        problems += await _slack(env)
    if env.matrix_enabled:
        problems += await _matrix(env)
    return problems


async def _x(env: Env) -> list[str]:
    from entrypoints.bootstrap import x_client

    client = x_client(env)
    try:
        me = await client.me()
    except Exception as e:
        return [
            f"X: GET /2/users/me failed ({type(e).__name__}: {e}); check X_API_KEY, "
            "X_API_SECRET, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET and X_API_BASE_URL"
        ]
    finally:
        client.close()
    print(f"X: OK, posting as @{me.username} (id {me.id})")
    return []


async def _slack(env: Env) -> list[str]:
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=reveal(env.SLACK_BOT_TOKEN), base_url=env.SLACK_API_BASE_URL)
    try:
        resp = await client.auth_test()
    except Exception as e:
        error = getattr(getattr(e, "response", None), "data", {}) or {}
        reason = error.get("error") if isinstance(error, dict) else None
        return [
            f"Slack: auth.test failed ({reason or type(e).__name__}); check SLACK_BOT_TOKEN "
            "and SLACK_API_BASE_URL"
        ]
    finally:
        session = getattr(client, "session", None)
        if session is not None:
            await session.close()
    print(f"Slack: OK, bot user {resp.get('user_id')} in team {resp.get('team')}")
    return []


async def _matrix(env: Env) -> list[str]:
    from nio import AsyncClient, WhoamiResponse

    client = AsyncClient(env.MATRIX_HOMESERVER or "", env.MATRIX_USER_ID or "")
    try:
        if env.MATRIX_ACCESS_TOKEN is not None:
            client.access_token = reveal(env.MATRIX_ACCESS_TOKEN)
        else:
            login = await client.login(reveal(env.MATRIX_PASSWORD))
            if not getattr(login, "access_token", None):
                return [
                    f"Matrix: login failed ({getattr(login, 'message', login)}); "
                    "check MATRIX_USER_ID and MATRIX_PASSWORD"
                ]
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            return [
                f"Matrix: whoami failed ({getattr(who, 'message', who)}); "
                "check MATRIX_HOMESERVER and MATRIX_ACCESS_TOKEN"
            ]
        if env.MATRIX_USER_ID and who.user_id != env.MATRIX_USER_ID:
            return [
                f"Matrix: the token belongs to {who.user_id}, not MATRIX_USER_ID "
                f"{env.MATRIX_USER_ID}"
            ]
        print(f"Matrix: OK, {who.user_id}")
        return []
    except Exception as e:
        return [f"Matrix: {env.MATRIX_HOMESERVER} unreachable ({type(e).__name__})"]
    finally:
        await client.close()
