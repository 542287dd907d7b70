"""X's post payloads in both spellings, as the core's Tweet (adapters/x_fields.py, pure)."""

from __future__ import annotations

from adapters.x_fields import Dialect, dialect_refused, page_tweets, timeline_params

# A real 400 for an unknown query parameter (plhery/node-twitter-api-v2#597, 2025-08).
UNKNOWN_PARAMETER = {
    "errors": [
        {
            "parameters": {"post.fields": ["created_at"]},
            "message": "The query parameter [post.fields] is not one of [query,start_time,"
            "end_time,since_id,until_id,max_results,next_token,pagination_token,sort_order,"
            "expansions,tweet.fields,media.fields,poll.fields,place.fields,user.fields]",
        }
    ],
    "title": "Invalid Request",
    "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request",
}

LONG = "A" * 300 + " #railways refund"


def page(new: bool) -> dict:
    """One mention with everything at once, in the old or the new names."""
    ref, note, hist, posts = (
        ("referenced_posts", "note_post", "edit_history_post_ids", "posts")
        if new
        else ("referenced_tweets", "note_tweet", "edit_history_tweet_ids", "tweets")
    )
    return {
        "data": [
            {
                "id": "30",
                "text": LONG[:270] + " https://t.co/abc",
                "author_id": "7",
                "conversation_id": "30",
                hist: ["10", "30"],
                ref: [{"type": "quoted", "id": "5"}],
                note: {
                    "text": LONG,
                    "entities": {"hashtags": [{"start": 301, "end": 310, "tag": "railways"}]},
                },
                "attachments": {"media_keys": ["3_1", "13_2", "3_missing"]},
                "entities": {
                    "urls": [
                        {"start": 271, "end": 287, "url": "https://t.co/abc", "media_key": "3_1"}
                    ]
                },
            }
        ],
        "includes": {
            "users": [{"id": "7", "username": "asha"}, {"id": "8", "username": "ravi"}],
            "media": [
                {
                    "media_key": "3_1",
                    "type": "photo",
                    "url": "https://pbs.twimg.com/a.jpg",
                    "alt_text": "a bill",
                },
                {
                    "media_key": "13_2",
                    "type": "video",
                    "preview_image_url": "https://pbs.twimg.com/v.jpg",
                    "duration_ms": 61000,
                    "variants": [
                        {
                            "content_type": "application/x-mpegURL",
                            "url": "https://video.twimg.com/v.m3u8",
                        },
                        {
                            "bit_rate": 256000,
                            "content_type": "video/mp4",
                            "url": "https://video.twimg.com/lo.mp4",
                        },
                        {
                            "bit_rate": 2176000,
                            "content_type": "video/mp4",
                            "url": "https://video.twimg.com/hi.mp4",
                        },
                    ],
                },
            ],
            posts: [{"id": "5", "text": "Free oxygen &amp; beds", "author_id": "8"}],
        },
    }


def test_both_spellings_read_alike() -> None:
    old, new = page_tweets(page(new=False)), page_tweets(page(new=True))
    assert old == new
    (t,) = old
    assert t.text == LONG  # the whole text, not the 270-character cut
    assert t.hashtags == ("railways",)
    assert t.earlier_versions == ("10",)
    assert (t.quoted, t.quoted_username, t.quoted_text) == ("5", "ravi", "Free oxygen & beds")
    photo, video = t.media  # a key includes.media left out is skipped
    assert (photo.kind, photo.link, photo.alt_text) == (
        "photo",
        "https://pbs.twimg.com/a.jpg",
        "a bill",
    )
    assert (video.image, video.link, video.duration_ms) == (
        "https://pbs.twimg.com/v.jpg",
        "https://video.twimg.com/hi.mp4",
        61000,
    )


def test_media_links_leave_a_short_post_text() -> None:
    body = page(new=False)
    item = body["data"][0]
    del item["note_tweet"]
    item["text"] = "bill attached https://t.co/abc"
    (t,) = page_tweets(body)
    assert t.text == "bill attached"
    assert t.hashtags == ()  # X sent entities, with no hashtags in them


def test_without_entities_hashtags_are_left_to_the_text() -> None:
    (t,) = page_tweets({"data": [{"id": "1", "text": "#covid19 help", "author_id": "7"}]})
    assert t.hashtags is None and t.media == () and t.earlier_versions == ()


def test_a_refused_field_parameter_is_recognised_by_name() -> None:
    assert dialect_refused(400, UNKNOWN_PARAMETER, Dialect.POST)
    assert not dialect_refused(400, UNKNOWN_PARAMETER, Dialect.TWEET)
    assert not dialect_refused(429, UNKNOWN_PARAMETER, Dialect.POST)
    other = {
        "errors": [
            {
                "parameters": {"since_id": ["x"]},
                "message": "The `since_id` query parameter value [x] is not valid",
            }
        ]
    }
    assert not dialect_refused(400, other, Dialect.TWEET)
    # X-spec-new's InvalidRequestProblem names it at the top level.
    assert dialect_refused(400, {"parameter": "tweet.fields", "value": "x"}, Dialect.TWEET)


def test_the_new_spelling_asks_for_renamed_fields_as_expansions() -> None:
    old, new = timeline_params(Dialect.TWEET), timeline_params(Dialect.POST)
    assert "note_tweet" in old["tweet.fields"] and "referenced_tweets" in old["tweet.fields"]
    assert "post.fields" not in old and "tweet.fields" not in new
    assert "note_post" in new["post.fields"] and "author_id" not in new["post.fields"]
    assert {"author_id", "referenced_posts", "edit_history_post_ids"} <= set(
        new["expansions"].split(",")
    )
