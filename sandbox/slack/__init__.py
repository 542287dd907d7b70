"""The Slack stand-in: the Web API, event delivery and Socket Mode in Slack's wire format.

state.py `SlackState`, built in layers: workspace.py (channels, users, messages) <
socket_mode.py < events.py (delivery to the bot) < web_api.py and people.py (what the
console and tests do); model.py the records and wire helpers; routes.py the aiohttp
subapp (Web API, control API, Socket Mode).
"""
