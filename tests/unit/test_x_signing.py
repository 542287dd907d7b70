"""The reply signer (adapters/x.py OAuth1Signer) against oauthlib, the library it stands
in for: for the same nonce and timestamp the Authorization header must be the same,
byte for byte, or X refuses every reply with a 401."""

from __future__ import annotations

import logging
import time

import pytest
from oauthlib import oauth1
from oauthlib.common import Request
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

from adapters.x import OAuth1Signer

NONCE = "17013279041234567890123456789"
TIMESTAMP = "1701327904"

# Real-looking credentials, and ones where every part needs percent-encoding (3.6).
PLAIN = ("xvz1evFS4wEEPTGEFPHBog", "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
         "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
         "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE")  # fmt: skip
AWKWARD = ("key with space/+=", "s&cret %25 é~", "12-tok*en!'()", "ünïcode&=+ 秘密")
NO_TOKEN = ("xvz1evFS4wEEPTGEFPHBog", "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw", "", "")

# A query that sorts around the oauth_* names, repeats a name, and holds escapes, "+"
# as a space, a name without "=", an empty value and UTF-8.
QUERY = "https://api.twitter.com/2/tweets?z=1&a=2&b=z&b=%C3%A9&b=&flag&q=a+b%2Bc&c%40=%3D%253D"
STALE = "https://api.twitter.com/2/tweets?oauth_signature=stale&a=1"  # never signed (3.4.1.3.1)

URLS = [
    "https://api.twitter.com/2/tweets",
    "http://127.0.0.1:8731/x/2/tweets",  # the sandbox: a port and a path prefix
    "HTTPS://API.Twitter.COM:443/2/tweets",  # case and the default port dropped (3.4.1.2)
    "http://localhost:80",  # no path: "/"
    "http://[::1]:9000/2/tweets",
    "https://proxy.example/x%20api/2/tweets",  # an escape in the path, encoded again
    "https://proxy.example/séva/2/tweets",  # unicode in the path
    "https://api.twitter.com/2/tweets?dry_run=true",
    QUERY,
    "https://api.twitter.com/2/tweets?text=%E0%A4%A8%E0%A4%AE%E0%A4%B8%E0%A5%8D%E0%A4%A4%E0%A5%87"
    "&emoji=%F0%9F%99%8F&tilde=%7E&slash=a/b",
    "https://user:pass@api.twitter.com/2/tweets#fragment",  # neither is signed
    STALE,
]


def oauthlib_header(credentials: tuple[str, str, str, str], method: str, url: str) -> str:
    consumer_key, consumer_secret, token, token_secret = credentials
    client = oauth1.Client(
        consumer_key,
        client_secret=consumer_secret,
        resource_owner_key=token,
        resource_owner_secret=token_secret,
        nonce=NONCE,
        timestamp=TIMESTAMP,
    )
    _, headers, _ = client.sign(url, http_method=method)
    return str(headers["Authorization"])


def ours(credentials: tuple[str, str, str, str], method: str, url: str) -> str:
    return OAuth1Signer(*credentials).authorization(method, url, nonce=NONCE, timestamp=TIMESTAMP)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    "credentials", [PLAIN, AWKWARD, NO_TOKEN], ids=["plain", "awkward", "no-token"]
)
@pytest.mark.parametrize("method", ["POST", "get"])
def test_the_header_is_oauthlibs(
    credentials: tuple[str, str, str, str], method: str, url: str
) -> None:
    assert ours(credentials, method, url) == oauthlib_header(credentials, method, url)


@pytest.mark.parametrize("url", [URLS[0], QUERY, STALE])
def test_the_signature_verifies_as_x_checks_it(url: str) -> None:
    """The check X makes (and the stand-in makes with oauthlib): the base string
    rebuilt from the request as sent, HMAC-SHA1 with the secrets. A secret off by one
    character fails it, so the comparisons above would see a wrong signature."""
    consumer_key, consumer_secret, token, token_secret = AWKWARD
    header = OAuth1Signer(*AWKWARD).authorization("POST", url)
    request = Request(url, "POST", headers={"Authorization": header})
    request.params = oauth_signature.collect_parameters(
        uri_query=url.partition("?")[2], headers={"Authorization": header}
    )
    request.signature = dict(oauth_utils.parse_authorization_header(header))["oauth_signature"]
    request.signature = oauth_utils.unescape(request.signature)
    assert oauth_signature.verify_hmac_sha1(request, consumer_secret, token_secret)
    assert not oauth_signature.verify_hmac_sha1(request, consumer_secret + "x", token_secret)
    assert not oauth_signature.verify_hmac_sha1(request, consumer_secret, token_secret[:-1])


def test_each_sign_has_its_own_nonce_and_the_current_time() -> None:
    signer = OAuth1Signer(*PLAIN)
    params = [
        dict(oauth_utils.parse_authorization_header(signer.authorization("POST", URLS[0])))
        for _ in range(2)
    ]
    assert params[0]["oauth_nonce"] != params[1]["oauth_nonce"]
    assert params[0]["oauth_signature"] != params[1]["oauth_signature"]
    assert abs(int(params[0]["oauth_timestamp"]) - time.time()) < 5
    assert set(params[0]) == {
        "oauth_consumer_key",
        "oauth_nonce",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_token",
        "oauth_version",
        "oauth_signature",
    }


def test_no_credential_shows_in_its_repr_or_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    signer = OAuth1Signer(*PLAIN)
    signer.authorization("POST", QUERY)
    shown = repr(signer) + str(signer) + caplog.text
    for credential in PLAIN:
        assert credential not in shown
    with pytest.raises(TypeError):
        vars(signer)  # no __dict__ to dump


def test_a_relative_url_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        OAuth1Signer(*PLAIN).authorization("POST", "/2/tweets")
