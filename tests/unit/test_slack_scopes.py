"""The Slack app manifest asks for exactly the scopes the code needs."""

from __future__ import annotations

from pathlib import Path

import yaml

from adapters.slack import scopes

MANIFEST = Path(__file__).resolve().parents[2] / "slack-app-manifest.yml"


def test_the_manifest_lists_exactly_the_scopes_of_the_feature_table() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == scopes.all_scopes()


def test_optional_features_add_their_scopes_only_when_configured() -> None:
    always = set(scopes.needed())
    assert {"chat:write", "commands", "users:read", "channels:read"} <= always
    optional = {f.when for f in scopes.FEATURES} - {"always"}
    for when in optional:
        assert set(scopes.needed({when})) > always
