"""The synthetic user population every load generator sends, so that all setups see the same mix.

Request ``i`` comes from user ``i % USERS`` (``user-<n>``). A user always has the same region
and device, as a real one would; the region and device lists have coprime lengths so that
every (region, device) pair occurs. The mix exercises every path of examples/rules.yaml: the
default share, the ``eu-consent-pending`` region rule (eu-west, eu-central) and the
``ios-first`` device rule (ios-*).

The wrk Lua script (users.lua) receives these lists as arguments: this module is the one
place they are defined.
"""

from __future__ import annotations

USERS = 100_000
REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-south")
DEVICES = ("ios-17", "ios-18", "android-14", "android-15", "web-chrome", "web-safari", "tv-os")
PATH = "/tts"
BODY = b'{"text": "hello"}'


def user_headers(n: int) -> tuple[str, str, str]:
    """(user id, region, device) of user ``n`` (taken modulo USERS)."""
    n %= USERS
    return f"user-{n}", REGIONS[n % len(REGIONS)], DEVICES[n % len(DEVICES)]


def http1_request(n: int, host: str) -> bytes:
    """The complete HTTP/1.1 keep-alive request of user ``n``: POST /tts with a small JSON body."""
    user, region, device = user_headers(n)
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\nx-user-id: {user}\r\nx-region: {region}\r\n"
        f"x-device-model: {device}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


def wrk_script_args() -> list[str]:
    """Arguments for users.lua: user count, comma-separated regions, comma-separated devices."""
    return [str(USERS), ",".join(REGIONS), ",".join(DEVICES)]
