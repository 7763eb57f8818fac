"""The per-process cache of verified passwords (mailyard.imapd.logincache)."""

from __future__ import annotations

import asyncio

from mailyard.imapd.logincache import LoginCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_hit_only_for_the_same_password_within_ttl() -> None:
    clock = Clock()
    cache = LoginCache(ttl=60, clock=clock)
    assert not cache.hit("a@x.test", "pw")
    cache.remember("a@x.test", "pw")
    assert cache.hit("a@x.test", "pw")
    assert not cache.hit("a@x.test", "other")
    assert not cache.hit("b@x.test", "pw")
    clock.now += 60
    assert not cache.hit("a@x.test", "pw")


def test_bounded_and_forgettable() -> None:
    cache = LoginCache(max_entries=2)
    for user in ("a", "b", "c"):
        cache.remember(user, "pw")
    assert not cache.hit("a", "pw") and cache.hit("c", "pw")
    cache.forget("c")
    assert not cache.hit("c", "pw")


def test_nothing_in_clear() -> None:
    cache = LoginCache()
    cache.remember("a", "secret-password")
    assert b"secret-password" not in repr(cache._entries).encode()


def test_logins_arriving_together_wait_for_the_one_verification() -> None:
    """Ten connections logging in at once: one verification, nine cache hits."""
    cache = LoginCache()
    verified: list[str] = []

    async def login(password: str) -> bool:
        if not cache.hit("a", password):
            await cache.wait("a", password)
        if cache.hit("a", password):
            return True
        with cache.verifying("a", password):
            verified.append(password)
            await asyncio.sleep(0)  # the guard's thread
            await asyncio.sleep(0)
            if password == "pw":
                cache.remember("a", password)
        return password == "pw"

    async def main() -> list[bool]:
        return await asyncio.gather(*(login("pw") for _ in range(10)),
                                    login("wrong"), login("wrong"))

    results = asyncio.run(main())
    assert results == [True] * 10 + [False, False]
    assert verified == ["pw", "wrong", "wrong"]  # a failure is not shared
