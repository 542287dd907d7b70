"""A real Synapse homeserver on loopback for tests, and a few client-API helpers.

Synapse runs as a subprocess from its own virtualenv (`SEVA_SYNAPSE_PYTHON`, else
`<repo>/.venv-synapse/bin/python`) so its dependencies never meet ours. Use it from
a test module with::

    from tests.synapse import Homeserver, synapse  # noqa: F401  (the fixture)

    def test_x(synapse: Homeserver) -> None: ...

`synapse` is session-scoped, so every module that imports it shares one server when
it is also imported by `tests/conftest.py`; imported only by a module it is started
once for that module's tests. Without Synapse the fixture skips with the reason and
the install command, never silently.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SERVER_NAME = "localhost"

# The whole fixture (start, users, room) should take about this long on a laptop;
# going over it warns (so a slow suite is visible) rather than fails.
FIXTURE_BUDGET_SECONDS = 6.0
# Past this, Synapse is taken to be broken and the fixture fails with its log.
START_TIMEOUT_SECONDS = 60.0
PORT_ATTEMPTS = 3
LEGACY_ROOM_VERSIONS = frozenset(str(v) for v in range(1, 12))

INSTALL_HINT = (
    "python3.11 -m venv .venv-synapse && .venv-synapse/bin/pip install matrix-synapse "
    "(or point SEVA_SYNAPSE_PYTHON at a Python that has it)"
)

_GENEROUS = {"per_second": 1000, "burst_count": 1000}
_OVERRIDES: dict[str, Any] = {
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "default_room_version": "11",
    "bcrypt_rounds": 4,
    "report_stats": False,
    "enable_metrics": False,
    "stats": {"enabled": False},
    "url_preview_enabled": False,
    "federation_domain_whitelist": [],
    "presence": {"enabled": False},
    "enable_registration": False,
    "rc_message": _GENEROUS,
    "rc_registration": _GENEROUS,
    "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
    "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
    "rc_joins_per_room": _GENEROUS,
    "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
    "rc_room_creation": _GENEROUS,
    "rc_admin_redaction": _GENEROUS,
}

_LOG_CONFIG = """\
version: 1
formatters:
  plain:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: plain
    filename: {path}
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


class SynapseNotInstalled(Exception):
    """No interpreter at the configured path, or no synapse package in it."""


class SynapseSlowWarning(UserWarning):
    """The Synapse fixture went over FIXTURE_BUDGET_SECONDS."""


class MatrixHTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any], what: str) -> None:
        super().__init__(f"{what}: HTTP {status} {body}")
        self.status = status
        self.body = body
        self.errcode = str(body.get("errcode", ""))


@dataclass(frozen=True, slots=True)
class MatrixUser:
    user_id: str
    password: str
    access_token: str
    device_id: str


def synapse_python() -> Path:
    configured = os.environ.get("SEVA_SYNAPSE_PYTHON")
    return Path(configured) if configured else REPO / ".venv-synapse" / "bin" / "python"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_budget(started: float, what: str = "Synapse fixture") -> float:
    """Warns when `what` (timed from `started`, a monotonic clock) went over budget."""
    elapsed = time.monotonic() - started
    if elapsed > FIXTURE_BUDGET_SECONDS:
        warnings.warn(
            f"{what} took {elapsed:.1f}s (budget {FIXTURE_BUDGET_SECONDS:.0f}s)",
            SynapseSlowWarning,
            stacklevel=2,
        )
    return elapsed


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Polls `condition` until it returns something truthy; fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


class Homeserver:
    """One running Synapse; the helpers speak the client-server API as a given user."""

    def __init__(self, directory: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.startup_seconds = 0.0  # set by `start`: for the fixture budget
        self.directory = directory
        self.port = port
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"
        self.server_name = SERVER_NAME
        config = yaml.safe_load((directory / "homeserver.yaml").read_text())
        self._shared_secret = str(config["registration_shared_secret"])

    # --- lifecycle

    @classmethod
    def start(cls, directory: Path, overrides: dict[str, Any] | None = None) -> Homeserver:
        """Generates a config in `directory` and runs Synapse until it answers.

        `overrides` replace top-level config keys after the test defaults (e.g. a strict
        `rc_message` to see M_LIMIT_EXCEEDED).

        Raises SynapseNotInstalled when the interpreter or the package is missing.
        """
        began = time.monotonic()
        python = synapse_python()
        if not python.exists():
            raise SynapseNotInstalled(f"no interpreter at {python}")
        directory.mkdir(parents=True, exist_ok=True)
        config_path = directory / "homeserver.yaml"
        generated = subprocess.run(
            [
                str(python),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                SERVER_NAME,
                "--config-path",
                str(config_path),
                "--data-directory",
                str(directory),
                "--generate-config",
                "--report-stats=no",
            ],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            check=False,
        )
        if generated.returncode != 0:
            if re.search(r"No module named '?synapse", generated.stderr):
                raise SynapseNotInstalled(f"{python} has no synapse package")
            raise RuntimeError(f"synapse --generate-config failed:\n{generated.stderr}")
        log_config = directory / "log.config"
        log_config.write_text(_LOG_CONFIG.format(path=directory / "homeserver.log"))
        config = yaml.safe_load(config_path.read_text())
        config.update(_OVERRIDES)
        config.update(overrides or {})
        config["log_config"] = str(log_config)

        last_error = ""
        for _ in range(PORT_ATTEMPTS):
            port = free_port()
            config["listeners"] = [
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ]
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            stderr_path = directory / "stderr.log"
            with stderr_path.open("wb") as stderr:
                process = subprocess.Popen(
                    [
                        str(python),
                        "-m",
                        "synapse.app.homeserver",
                        "--config-path",
                        str(config_path),
                    ],
                    cwd=directory,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                )
            server = cls(directory, port, process)
            if server._wait_ready():
                server.startup_seconds = time.monotonic() - began
                return server
            last_error = server.log_tail()
            server.stop()
            if "Address already in use" not in last_error:
                break
        raise RuntimeError(f"Synapse did not start:\n{last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(
                    f"{self.base_url}/_matrix/client/versions", timeout=1
                ) as resp:
                    if resp.status == 200:
                        return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("stderr.log", "homeserver.log"):
            path = self.directory / name
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    # --- HTTP

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """The decoded JSON reply (an object, or a list for e.g. `/state`)."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"raw": raw.decode(errors="replace")}
            raise MatrixHTTPError(e.code, payload, f"{method} {path}") from None

    def _as(
        self, user: MatrixUser, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return dict(self.request(method, path, body, token=user.access_token))

    # --- users

    def register(
        self, localpart: str, password: str | None = None, admin: bool = False
    ) -> MatrixUser:
        """Creates a user through the shared-secret admin API."""
        password = password or f"pw-{uuid.uuid4().hex}"
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self._shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode()]))
        mac.update(b"\x00admin" if admin else b"\x00notadmin")
        reply = self.request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return MatrixUser(reply["user_id"], password, reply["access_token"], reply["device_id"])

    def login(self, user: MatrixUser, device_id: str | None = None) -> MatrixUser:
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,
        }
        if device_id:
            body["device_id"] = device_id
        reply = self.request("POST", "/_matrix/client/v3/login", body)
        return MatrixUser(user.user_id, user.password, reply["access_token"], reply["device_id"])

    # --- rooms

    def create_room(
        self,
        creator: MatrixUser,
        *,
        invite: tuple[MatrixUser, ...] = (),
        power_levels: dict[str, int] | None = None,
        encrypted: bool = False,
        name: str = "seva test",
        room_version: str = "11",
    ) -> str:
        """A private room; `power_levels` maps user ids to levels.

        From room version 12 on the creator is above all levels and must not be listed.
        """
        body: dict[str, Any] = {
            "room_version": room_version,
            "preset": "private_chat",
            "name": name,
            "invite": [u.user_id for u in invite],
        }
        if power_levels:
            users = dict(power_levels)
            if room_version in LEGACY_ROOM_VERSIONS:
                users.setdefault(creator.user_id, 100)
            body["power_level_content_override"] = {"users": users}
        if encrypted:
            body["initial_state"] = [_encryption_state()]
        return str(self._as(creator, "POST", "/_matrix/client/v3/createRoom", body)["room_id"])

    def invite(self, inviter: MatrixUser, room_id: str, invitee: MatrixUser) -> None:
        self._as(
            inviter,
            "POST",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/invite",
            {"user_id": invitee.user_id},
        )

    def join(self, user: MatrixUser, room_id: str) -> None:
        self._as(user, "POST", f"/_matrix/client/v3/join/{_q(room_id)}", {})

    def state(
        self, user: MatrixUser, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any]:
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return self._as(user, "GET", path)

    def put_state(
        self,
        user: MatrixUser,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str = "",
    ) -> str:
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return str(self._as(user, "PUT", path, content)["event_id"])

    def set_power_levels(self, admin: MatrixUser, room_id: str, users: dict[str, int]) -> None:
        """Merges `users` into the room's power levels."""
        content = self.state(admin, room_id, "m.room.power_levels")
        content["users"] = {**content.get("users", {}), **users}
        self.put_state(admin, room_id, "m.room.power_levels", content)

    def enable_encryption(self, admin: MatrixUser, room_id: str) -> None:
        state = _encryption_state()
        self.put_state(admin, room_id, state["type"], state["content"])

    # --- events

    def send(self, user: MatrixUser, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{uuid.uuid4().hex}"
        return str(self._as(user, "PUT", path, content)["event_id"])

    def send_text(
        self, user: MatrixUser, room_id: str, body: str, *, msgtype: str = "m.text"
    ) -> str:
        return self.send(user, room_id, "m.room.message", {"msgtype": msgtype, "body": body})

    def send_thread_reply(
        self, user: MatrixUser, room_id: str, root: str, body: str, *, msgtype: str = "m.text"
    ) -> str:
        content = {
            "msgtype": msgtype,
            "body": body,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": root},
            },
        }
        return self.send(user, room_id, "m.room.message", content)

    def send_edit(self, user: MatrixUser, room_id: str, original: str, body: str) -> str:
        content = {
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        }
        return self.send(user, room_id, "m.room.message", content)

    def react(self, user: MatrixUser, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return self.send(user, room_id, "m.reaction", content)

    def messages(self, user: MatrixUser, room_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The room's latest events, oldest first."""
        reply = self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room_id)}/messages",
            token=user.access_token,
            query={"dir": "b", "limit": str(limit)},
        )
        return list(reversed(reply.get("chunk", [])))

    def event(self, user: MatrixUser, room_id: str, event_id: str) -> dict[str, Any]:
        return self._as(user, "GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/event/{_q(event_id)}")

    def wait_for_event(
        self,
        user: MatrixUser,
        room_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first recent event matching `predicate`, waiting for it up to `timeout`."""

        def find() -> dict[str, Any] | None:
            return next((e for e in self.messages(user, room_id) if predicate(e)), None)

        return dict(wait_until(find, timeout, what=f"an event in {room_id}"))

    async def await_event(
        self,
        user: MatrixUser,
        room_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        within: float = 10.0,
    ) -> dict[str, Any]:
        """Like `wait_for_event`, without blocking the event loop the bot runs in."""
        deadline = time.monotonic() + within
        while True:
            events = await asyncio.to_thread(self.messages, user, room_id)
            found = next((e for e in events if predicate(e)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for an event in {room_id}")
            await asyncio.sleep(0.05)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _encryption_state() -> dict[str, Any]:
    return {
        "type": "m.room.encryption",
        "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }


def start_or_skip(directory: Path, overrides: dict[str, Any] | None = None) -> Homeserver:
    """Starts Synapse, or skips the calling test with how to install it."""
    try:
        return Homeserver.start(directory, overrides)
    except SynapseNotInstalled as e:
        pytest.skip(f"Synapse not installed ({e}): {INSTALL_HINT}")


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    """A running Synapse for the whole session, stopped at the end."""
    started = time.monotonic()
    server = start_or_skip(tmp_path_factory.mktemp("synapse"))
    try:
        check_budget(started, "Synapse start")
        yield server
    finally:
        server.stop()
