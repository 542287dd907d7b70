"""The X stand-in: the API v2 endpoints the bot uses, in X's wire format."""
