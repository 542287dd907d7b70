"""Settings from the environment and the YAML file, validated with every problem named."""

from __future__ import annotations

import os
import re
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain import ChatUserId, DepartmentId, Platform
from bot.routing import is_hashtag


class ConfigError(Exception):
    """Bad configuration: each problem names where it is and what was expected."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- The environment


def reveal(value: SecretStr | None) -> str:
    """A secret's text, for handing to a client (never for logging); "" when unset."""
    return value.get_secret_value() if value is not None else ""


class Env(BaseSettings):
    """Secrets and endpoints (SPEC section 3); `.env` in the working directory is read too."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    SEVA_DATABASE_URL: str = "sqlite:///./seva.db"
    SEVA_CONFIG: str = "./seva.yaml"
    SEVA_HTTP_HOST: str = "127.0.0.1"
    SEVA_HTTP_PORT: int = Field(3000, ge=0, le=65535)

    X_BEARER_TOKEN: SecretStr | None = None
    X_API_KEY: SecretStr | None = None
    X_API_SECRET: SecretStr | None = None
    X_ACCESS_TOKEN: SecretStr | None = None
    X_ACCESS_TOKEN_SECRET: SecretStr | None = None
    X_API_BASE_URL: str = "https://api.twitter.com"

    SLACK_BOT_TOKEN: SecretStr | None = None
    SLACK_SIGNING_SECRET: SecretStr | None = None
    SLACK_APP_TOKEN: SecretStr | None = None
    SLACK_API_BASE_URL: str = "https://slack.com/api/"

    MATRIX_HOMESERVER: str | None = None
    MATRIX_USER_ID: str | None = None
    MATRIX_ACCESS_TOKEN: SecretStr | None = None
    MATRIX_PASSWORD: SecretStr | None = None

    # The sandbox and the end-to-end tests only: a file holding seconds added to the
    # bot's clock (adapters/clock.py). Never set in production.
    SEVA_CLOCK_FILE: str | None = None

    @property
    def x_user_context(self) -> bool:
        return all(
            v is not None
            for v in (
                self.X_API_KEY,
                self.X_API_SECRET,
                self.X_ACCESS_TOKEN,
                self.X_ACCESS_TOKEN_SECRET,
            )
        )

    @property
    def slack_enabled(self) -> bool:
        return self.SLACK_BOT_TOKEN is not None

    @property
    def matrix_enabled(self) -> bool:
        return self.MATRIX_HOMESERVER is not None

    def problems(self) -> list[str]:
        """Cross-field checks and `.env.example` values left in place."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(raw, str) and raw.startswith("replace-me"):
                out.append(f"environment: {name}: still the example value from .env.example")
            if isinstance(value, SecretStr) and not raw:
                out.append(f"environment: {name}: set but empty")
        scheme = self.SEVA_DATABASE_URL.split(":", 1)[0]
        if not scheme.startswith(("sqlite", "postgresql")):
            out.append(
                f"environment: SEVA_DATABASE_URL: {scheme!r} is not supported: "
                "expected sqlite:///… or postgresql://…"
            )
        if not self.x_user_context:
            missing = [
                n
                for n in ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET")
                if getattr(self, n) is None
            ]
            out.append(
                "environment: "
                + ", ".join(missing)
                + ": required (user-context OAuth 1.0a: posting replies, users/me, and reads "
                "when there is no X_BEARER_TOKEN)"
            )
        if (
            self.slack_enabled
            and self.SLACK_SIGNING_SECRET is None
            and self.SLACK_APP_TOKEN is None
        ):
            out.append(
                "environment: SLACK_SIGNING_SECRET: required in HTTP mode "
                "(or set SLACK_APP_TOKEN for Socket Mode)"
            )
        if (
            self.SLACK_APP_TOKEN is not None
            and not self.SLACK_APP_TOKEN.get_secret_value().startswith("xapp-")
        ):
            out.append(
                "environment: SLACK_APP_TOKEN: expected an app-level token starting with xapp-"
            )
        if self.matrix_enabled:
            if not self.MATRIX_USER_ID:
                out.append("environment: MATRIX_USER_ID: required with MATRIX_HOMESERVER")
            if self.MATRIX_ACCESS_TOKEN is None and self.MATRIX_PASSWORD is None:
                out.append(
                    "environment: MATRIX_ACCESS_TOKEN: required with MATRIX_HOMESERVER "
                    "(or MATRIX_PASSWORD)"
                )
        return out


# --- The YAML file

_ID = re.compile(r"^[a-z0-9-]+$")
_X_USERNAME = re.compile(r"@?[A-Za-z0-9_]{1,15}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class XConfig(_Strict):
    poll_seconds: float = Field(15, gt=0)
    search_query: str | None = Field(None, max_length=512)


class SlackConfig(_Strict):
    post_rate_per_channel: float = Field(1.0, ge=0)
    commands: str = "/ticket"

    @field_validator("commands")
    @classmethod
    def _slash(cls, v: str) -> str:
        if not re.fullmatch(r"/[a-z0-9_-]+", v):
            raise ValueError("expected a slash command such as /ticket")
        return v


class MatrixConfig(_Strict):
    min_power_level: int = 50


def _zone(value: str) -> str:
    """An IANA time zone name that this machine's time zone database knows."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r}: unknown time zone (expected an IANA name such as Asia/Kolkata)"
        ) from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone)]


class Oncall(_Strict):
    """The rotation. Without `timezone`, shifts are exact hours from `starts` (which then
    needs its UTC offset). With it, shifts are kept in that zone's wall-clock time, so a
    09:00 hand-over stays at 09:00 across a daylight-saving change; `starts` is then read
    as a wall time there (an offset, if given, must be the zone's own at that time).
    The rules at the edges are in bot/rotation.py."""

    members: list[ChatUserId] = Field(min_length=1)
    shift_hours: float = Field(24, gt=0)
    timezone: TimeZoneName | None = None  # declared before `starts`, which reads it
    starts: datetime
    slack_usergroup: str | None = None  # kept equal to whoever is on call (Slack only)

    @field_validator("starts")
    @classmethod
    def _starts(cls, v: datetime, info: ValidationInfo) -> datetime:
        if "timezone" not in info.data:
            return v  # the zone itself is wrong, and said so: nothing to check against
        zone = info.data["timezone"]
        if zone is None:
            if v.tzinfo is None:
                raise ValueError(
                    "expected a time with a UTC offset, e.g. 2026-11-30T09:00:00+05:30 "
                    "(or name the rotation's oncall.timezone)"
                )
            return v
        if v.tzinfo is None:
            return v
        wall = v.replace(tzinfo=None)
        offsets = {wall.replace(tzinfo=ZoneInfo(zone), fold=f).utcoffset() for f in (0, 1)}
        if v.utcoffset() not in offsets:
            expected = " or ".join(sorted(_offset_text(o) for o in offsets if o is not None))
            raise ValueError(
                f"{v.isoformat()}: {_offset_text(v.utcoffset())} is not {zone}'s UTC offset "
                f"at that time ({expected}); leave the offset out to use the zone's"
            )
        return v

    @field_validator("slack_usergroup")
    @classmethod
    def _usergroup(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"S[A-Z0-9]{2,}", v):
            raise ValueError(f"{v!r}: expected a Slack user group id such as S0HEALTHONCALL")
        return v

    @property
    def zone(self) -> tzinfo:
        """Where the rotation's times are shown (and, with `timezone`, kept)."""
        if self.timezone is not None:
            return ZoneInfo(self.timezone)
        assert self.starts.tzinfo is not None
        return self.starts.tzinfo


def _offset_text(offset: timedelta | None) -> str:
    if offset is None:
        return "no offset"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class Department(_Strict):
    id: DepartmentId
    name: str
    slack_channel: str | None = None
    matrix_room: str | None = None
    keywords: list[str] = []
    hashtags: list[str] = []
    agents: list[ChatUserId] = []
    oncall: Oncall | None = None
    escalate_after_minutes: float | None = Field(30, gt=0)
    escalate_to: list[ChatUserId] = []
    escalate_urgent_after_minutes: float | None = Field(5, gt=0)
    # The second step: still no public reply this long after the citizen asked (and
    # escalated once already): mention `escalate_again_to` too. Off unless both are set.
    escalate_again_after_minutes: float | None = Field(None, gt=0)
    escalate_again_to: list[ChatUserId] = []
    reply_mode: Literal["direct", "confirm"] = "direct"

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.fullmatch(v):
            raise ValueError("expected lower-case letters, digits and '-' only")
        return v

    @field_validator("hashtags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for tag in v:
            if tag.startswith(("#", "＃")) or not tag.strip():
                raise ValueError(f"{tag!r}: write hashtags without '#'")
            if not is_hashtag(tag):
                raise ValueError(
                    f"{tag!r}: X never reads this as one hashtag (expected letters, marks, "
                    "digits and '_' only, with at least one letter)"
                )
        return v

    @field_validator("matrix_room")
    @classmethod
    def _room(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"![^:\s]+:\S+", v):
            raise ValueError("expected a room id such as '!abc:example.org'")
        return v

    @property
    def platform(self) -> Platform:
        return "slack" if self.slack_channel is not None else "matrix"

    @property
    def channel(self) -> str:
        return self.slack_channel or self.matrix_room or ""

    @property
    def escalate_after(self) -> timedelta | None:
        if self.escalate_after_minutes is None:
            return None
        return timedelta(minutes=self.escalate_after_minutes)

    @property
    def escalate_again_after(self) -> timedelta | None:
        if self.escalate_again_after_minutes is None:
            return None
        return timedelta(minutes=self.escalate_again_after_minutes)

    @property
    def escalate_urgent_after(self) -> timedelta | None:
        if self.escalate_urgent_after_minutes is None:
            return None
        return timedelta(minutes=self.escalate_urgent_after_minutes)


class Triage(_Strict):
    """Which queries jump the queue (`urgent`) and whose mentions make no ticket (`ignore`)."""

    urgent: list[str] = []
    ignore: list[str] = []

    @field_validator("urgent")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        for word in v:
            if not word.strip():
                raise ValueError(f"{word!r}: expected a word or phrase")
        return v

    @field_validator("ignore")
    @classmethod
    def _usernames(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _X_USERNAME.fullmatch(name):
                raise ValueError(
                    f"{name!r}: expected an X username such as some_spam_account "
                    "(letters, digits and '_', at most 15)"
                )
        return v


_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_PHONE_CHARS = re.compile(r"[0-9+\-() .]+")


def _host_name(value: str) -> str:
    """`Gov.IN` -> `gov.in`, an internationalised name -> its `xn--` form: the form
    hosts in replies are compared in. Anything but a bare host name is refused."""
    host = value.strip().rstrip(".").lower()
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{value!r}: expected a host name such as gov.in (no scheme or path)")
    return ascii_host


def _quoted(value: object) -> object:
    # YAML reads 1075 as a number and 0112306 as an octal one: only quoted text is exact.
    if isinstance(value, int | float):
        raise ValueError(f"{value!r}: write phone numbers in quotes, e.g. '1075'")
    return value


def _phone_number(value: str) -> str:
    if not _PHONE_CHARS.fullmatch(value) or not any(c.isdigit() for c in value):
        raise ValueError(f"{value!r}: expected a phone number such as '1075' or '+91 11 2306 1978'")
    return value


class SafetyConfig(_Strict):
    """What holds a public reply for an agent's confirmation (SPEC section 5)."""

    official_numbers: list[
        Annotated[str, BeforeValidator(_quoted), AfterValidator(_phone_number)]
    ] = []
    max_reply_parts: int = Field(4, ge=1)
    allow_mentions: bool = False
    allowed_link_domains: list[Annotated[str, AfterValidator(_host_name)]] = []
    retention_days: int | None = Field(None, ge=1)


def _clock_time(value: object) -> object:
    # YAML 1.1 reads an unquoted 18:00 as the number 1080 (base 60): only quotes are exact.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r}: write the time in quotes, e.g. '18:00'")
    return value


def _local_time(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("expected a local time such as '18:00': `timezone` says where")
    return value


class DigestConfig(_Strict):
    """The daily digest per department (SPEC section 5): at `at`, local time in `timezone`."""

    at: Annotated[time, BeforeValidator(_clock_time), AfterValidator(_local_time)] = time(18, 0)
    timezone: TimeZoneName = "Asia/Kolkata"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Config(_Strict):
    x: XConfig = XConfig()
    slack: SlackConfig = SlackConfig()
    matrix: MatrixConfig = MatrixConfig()
    triage: Triage = Triage()
    safety: SafetyConfig = SafetyConfig()
    supervisors: list[ChatUserId] = []
    digest: DigestConfig | None = None  # no digest unless the key is there
    departments: list[Department] = Field(min_length=1)
    default_department: DepartmentId

    def department(self, dept_id: str) -> Department | None:
        return next((d for d in self.departments if d.id == dept_id), None)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_config(data: Any, source: str) -> Config:
    """Validates a YAML document; raises ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping at the top level"])
    problems: list[str] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        problems = [f"{source}: {_loc(tuple(err['loc']))}: {_describe(err)}" for err in e.errors()]
    # Checks across keys run on the raw data, so they are listed even beside field errors.
    problems += _cross_field_problems(data, source)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _cross_field_problems(data: dict[str, Any], source: str) -> list[str]:
    out: list[str] = []
    depts = data.get("departments")
    if not isinstance(depts, list):
        return out
    ids: list[object] = []
    for i, d in enumerate(depts):
        if not isinstance(d, dict):
            continue
        if d.get("id") in ids:
            out.append(f"{source}: departments[{i}].id: {d.get('id')!r} is used twice")
        ids.append(d.get("id"))
        if (d.get("slack_channel") is None) == (d.get("matrix_room") is None):
            out.append(
                f"{source}: departments[{i}]: expected exactly one of slack_channel / matrix_room"
            )
        again, first = d.get("escalate_again_after_minutes"), d.get("escalate_after_minutes", 30)
        if (
            isinstance(again, int | float)
            and isinstance(first, int | float)
            and not isinstance(again, bool)
            and again <= first
        ):
            out.append(
                f"{source}: departments[{i}].escalate_again_after_minutes: {again} is not after "
                f"escalate_after_minutes ({first}); the second step comes after the first"
            )
        oncall = d.get("oncall")
        if isinstance(oncall, dict) and oncall.get("slack_usergroup") and d.get("matrix_room"):
            out.append(
                f"{source}: departments[{i}].oncall.slack_usergroup: department "
                f"{d.get('id')!r} is on Matrix, and user groups are Slack's"
            )
    default = data.get("default_department")
    if default is not None and default not in ids:
        out.append(
            f"{source}: default_department: {default!r} is not one of the departments "
            f"({', '.join(str(i) for i in ids)})"
        )
    return out


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{p}: config file not found (pass --config FILE or set SEVA_CONFIG)"]
        ) from None
    except OSError as e:
        raise ConfigError([f"{p}: cannot read: {e.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise ConfigError([f"{p}: {where}: not valid YAML ({getattr(e, 'problem', e)})"]) from None
    return parse_config(data, str(p))


def load_env(env_file: str | None = ".env") -> Env:
    try:
        return Env(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as e:
        raise ConfigError(
            [f"environment: {_loc(tuple(err['loc']))}: {_describe(err)}" for err in e.errors()]
        ) from None


def cross_check(config: Config, env: Env, source: str) -> list[str]:
    """Problems that need both files: a department on a platform that is not configured."""
    out = []
    for i, d in enumerate(config.departments):
        if d.platform == "slack" and not env.slack_enabled:
            out.append(
                f"{source}: departments[{i}].slack_channel: department {d.id!r} uses Slack "
                "but SLACK_BOT_TOKEN is not set"
            )
        if d.platform == "matrix" and not env.matrix_enabled:
            out.append(
                f"{source}: departments[{i}].matrix_room: department {d.id!r} uses Matrix "
                "but MATRIX_HOMESERVER is not set"
            )
    return out
