"""Which attached files can go out with a reply tweet (bot/media.py)."""

from __future__ import annotations

from bot.domain import ChatFile
from bot.media import looks_like, sort_files


def test_images_go_out_and_everything_else_is_held_with_its_reason() -> None:
    files = [
        ChatFile("F1", "map.png", "image/png", 1000),
        ChatFile("F2", "report.pdf", "application/pdf", 1000),
        ChatFile("F3", "huge.jpg", "image/jpeg", 6 * 1024 * 1024),
        *(ChatFile(f"F{i}", f"p{i}.webp", "image/webp", 10) for i in range(4, 8)),
    ]
    images, refused = sort_files(files)
    assert [f.id for f in images] == ["F1", "F4", "F5", "F6"]
    assert refused == [
        "report.pdf is not an image X can attach (JPEG, PNG, GIF or WEBP)",
        "huge.jpg is larger than X's 5 MB for an image",
        "p7.webp is one image too many: X attaches at most 4",
    ]


def test_a_login_page_is_never_taken_for_an_image() -> None:
    assert looks_like(b"\x89PNG\r\n\x1a\n....", "image/png")
    assert looks_like(b"\xff\xd8\xff\xe0", "image/jpeg")
    assert looks_like(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp")
    assert not looks_like(b"<!DOCTYPE html><html>Sign in", "image/png")
    assert not looks_like(b"GIF89a", "application/pdf")
