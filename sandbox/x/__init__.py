"""The X stand-in: the API v2 endpoints the bot uses, in X's wire format.

state.py `XState` (users, tweets, limits, faults, OAuth, timelines); model.py records,
errors and parameter parsing; search.py the query language; api.py X's endpoints;
control.py the sandbox's own control API; routes.py the aiohttp app.
"""
