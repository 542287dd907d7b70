"""The bot token scopes each feature needs: one table, read by `seva check --online`
(against the `x-oauth-scopes` that `auth.test` returns) and compared with
slack-app-manifest.yml by a test, so the manifest lists exactly what the code uses.

A feature that adds a Slack call adds its row here (and its scope to the manifest).
Scopes per method: docs.slack.dev/reference/methods/* (facts-issue7 section 15).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Feature:
    does: str  # what the bot does with it, in the words of a fix
    scopes: tuple[str, ...]
    when: str = "always"  # or the name of the optional feature that needs it


FEATURES: tuple[Feature, ...] = (
    Feature(
        "post thread roots, answers and previews (chat.postMessage, chat.update)", ("chat:write",)
    ),
    Feature("answer /ticket (the slash command)", ("commands",)),
    Feature("read agents' replies in public channels (message.channels)", ("channels:history",)),
    Feature("read agents' replies in private channels (message.groups)", ("groups:history",)),
    Feature("show each ticket's state on its root (reactions.add)", ("reactions:write",)),
    Feature(
        "tweet people's names, not their ids, and assign by name (users.info, users.list)",
        ("users:read",),
    ),
    Feature(
        "check the bot is in each channel, name channels, and check who is in a "
        "department's channel before they change its tickets (conversations.info, "
        "conversations.members)",
        ("channels:read", "groups:read"),
    ),
    Feature("tweet the images agents attach to replies (files.info, url_private)", ("files:read",)),
    Feature(
        "keep the on-call user group equal to whoever is on call "
        "(usergroups.users.list, usergroups.users.update)",
        ("usergroups:read", "usergroups:write"),
        when="oncall_usergroup",  # entrypoints/online.py switches it on
    ),
)


def needed(enabled: Collection[str] = ()) -> dict[str, Feature]:
    """Every scope the configured features need, with the first feature needing it."""
    out: dict[str, Feature] = {}
    for feature in FEATURES:
        if feature.when == "always" or feature.when in enabled:
            for scope in feature.scopes:
                out.setdefault(scope, feature)
    return out


def all_scopes() -> set[str]:
    """What the app manifest must request: every feature's scopes, optional ones too."""
    return {scope for feature in FEATURES for scope in feature.scopes}
