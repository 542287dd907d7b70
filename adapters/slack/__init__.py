"""Slack as a `ChatPlatform`: platform.py (the Web API, events, slash commands and
buttons, on slack-bolt and slack_sdk), render.py (`Rich` to escaped mrkdwn and blocks),
parse.py (Slack payloads to the core's types)."""
