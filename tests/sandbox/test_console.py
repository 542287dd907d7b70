"""The sandbox server: one origin serving the console and both stand-ins."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.scenario import CHANNELS, HANDLE, USERS, ScenarioError, play
from sandbox.server import STATIC_DIR, Sandbox, start_sandbox
from sandbox.slack.state import SlackState
from sandbox.x.state import XState

SLACK_TOKEN = "xoxb-sandbox-console-test"
SIGNING_SECRET = "console-test-signing-secret"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    x_state = XState(username=HANDLE)
    slack_state = SlackState(SLACK_TOKEN, SIGNING_SECRET, None, channels=CHANNELS, users=USERS)
    running = await start_sandbox("127.0.0.1", 0, x_state=x_state, slack_state=slack_state)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def test_port_zero_reports_the_bound_port_and_urls(sandbox: Sandbox) -> None:
    assert sandbox.port != 0
    assert sandbox.url == f"http://127.0.0.1:{sandbox.port}"
    assert sandbox.x_base_url == sandbox.url + "/x"
    assert sandbox.slack_api_url == sandbox.url + "/slack/api/"


async def test_root_serves_the_console_with_both_panes(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with http.get(sandbox.url + "/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert resp.charset == "utf-8"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert 'id="x-pane"' in page
    assert 'id="slack-pane"' in page
    assert ">@SevaHelp </textarea>" in page  # the composer starts addressed to the handle
    assert 'value="citizen_asha"' in page
    # No CDN: every script and stylesheet comes from this server.
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert ref.startswith("/static/"), ref


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
        ("console.html", "text/html"),
    ],
)
async def test_static_assets_load_with_their_content_types(
    sandbox: Sandbox, http: aiohttp.ClientSession, name: str, content_type: str
) -> None:
    async with http.get(f"{sandbox.url}/static/{name}") as resp:
        assert resp.status == 200
        assert resp.content_type == content_type
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path", ["/static/missing.js", "/static/..%2Fserver.py", "/static/%2E%2E%2Fserver.py"]
)
async def test_nothing_outside_the_static_folder_is_served(
    sandbox: Sandbox, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(sandbox.url + path) as resp:
        assert resp.status == 404


async def test_both_stand_ins_answer_on_the_same_origin(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    body = {"username": "citizen_asha", "text": "@SevaHelp is the oxygen desk open?"}
    async with http.post(sandbox.x_base_url + "/sandbox/tweets", json=body) as resp:
        assert resp.status == 201
    async with http.get(sandbox.x_base_url + "/sandbox/state") as resp:
        x = await resp.json()
    assert x["account"]["username"] == HANDLE
    assert [t["text"] for t in x["tweets"]] == [body["text"]]

    headers = {"Authorization": f"Bearer {SLACK_TOKEN}"}
    async with http.post(sandbox.slack_api_url + "auth.test", headers=headers) as resp:
        assert (await resp.json())["ok"] is True
    async with http.get(sandbox.url + "/slack/sandbox/state") as resp:
        slack = await resp.json()
    assert [(c["id"], c["name"]) for c in slack["channels"]] == list(CHANNELS)
    assert {u["id"] for u in slack["users"]} == {user_id for user_id, _, _ in USERS}


async def test_stop_closes_the_listener(http: aiohttp.ClientSession) -> None:
    x_state = XState(username=HANDLE)
    slack_state = SlackState(SLACK_TOKEN, SIGNING_SECRET, None, channels=CHANNELS, users=USERS)
    running = await start_sandbox(port=0, x_state=x_state, slack_state=slack_state)
    await running.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(running.url + "/"):
            pass


def test_console_script_never_parses_text_as_html() -> None:
    """Tweets and messages are hostile input: the console builds DOM nodes, never markup."""
    script = (STATIC_DIR / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


EXTERNAL_MARKUP = re.compile(r"""(?:src|href)=["']?https?:|url\(\s*["']?https?:|@import""")
EXTERNAL_SCRIPT = re.compile(r"""(?:fetch|import)\(\s*["'`]https?:""")


def test_console_assets_need_no_network() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        if path.suffix in {".html", ".css"}:
            assert not EXTERNAL_MARKUP.search(text), path.name
        if path.suffix == ".js":
            assert not EXTERNAL_SCRIPT.search(text), path.name


async def test_scenario_names_the_step_that_did_not_complete(sandbox: Sandbox) -> None:
    # No bridge is running, so the citizen's tweet never becomes a ticket.
    lines: list[str] = []
    with pytest.raises(ScenarioError, match=r"step a did not complete within 0\.3s"):
        await play(sandbox.url, log=lines.append, timeout=0.3)
    assert lines == []
