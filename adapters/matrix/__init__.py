"""Matrix as a `ChatPlatform`, on matrix-nio, for unencrypted rooms: platform.py (posting,
finding, marks, incoming events), render.py (`Rich` to escaped HTML and plain text,
where the key is kept), sync.py (login, joining the rooms and the sync loop)."""
