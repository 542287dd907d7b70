"""Which files an agent attaches can go out with a reply tweet (pure).

X takes up to 4 images a post, JPEG, PNG, GIF or WEBP, each up to 5 MB (X's media
best practices, docs x-api/media/quickstart/best-practices.mdx; facts-issue7 section 7).
Anything else is held with the reason, never dropped in silence.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain import ChatFile

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGES = 4


def sort_files(files: Sequence[ChatFile]) -> tuple[list[ChatFile], list[str]]:
    """(the images that can go out, the reasons the others cannot), in order."""
    images: list[ChatFile] = []
    refused: list[str] = []
    for f in files:
        if f.mimetype.lower() not in IMAGE_TYPES:
            refused.append(f"{f.name} is not an image X can attach (JPEG, PNG, GIF or WEBP)")
        elif f.size > MAX_IMAGE_BYTES:
            refused.append(f"{f.name} is larger than X's 5 MB for an image")
        elif len(images) == MAX_IMAGES:
            refused.append(f"{f.name} is one image too many: X attaches at most {MAX_IMAGES}")
        else:
            images.append(f)
    return images, refused


def looks_like(data: bytes, mimetype: str) -> bool:
    """Whether the bytes are the image the platform said they are (magic numbers): a
    login page served instead of a file must never be uploaded."""
    signatures = {
        "image/png": (b"\x89PNG\r\n\x1a\n",),
        "image/jpeg": (b"\xff\xd8\xff",),
        "image/gif": (b"GIF87a", b"GIF89a"),
    }
    if mimetype == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith(signatures.get(mimetype, (b"\x00\x00impossible",)))
