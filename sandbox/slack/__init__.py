"""The Slack stand-in: the Web API, event delivery and Socket Mode in Slack's wire format."""
