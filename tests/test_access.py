"""The one access rule: who is local, who is an admin, and the password throttle."""

import hmac

import pytest

from galaxy_core import access
from galaxy_core.access import (PasswordThrottle, Visitor, decide, host_name, is_loopback,
                                local_visitor, password_matches, trusted_proxies)

HOST = {"host": "localhost:8501"}


def test_loopback_detection():
    for address in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.5"):
        assert is_loopback(address), address
    for address in (None, "", "0.0.0.0", "192.168.1.4", "::", "example.org", "localhost.evil"):
        assert not is_loopback(address), address


def test_host_names():
    assert host_name("localhost:8501") == "localhost"
    assert host_name("[::1]:8501") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("Galaxy.Example.org:443") == "galaxy.example.org"
    assert host_name(None) == ""


def test_a_plain_loopback_visitor_is_local():
    for host in ("localhost:8501", "127.0.0.1:8501", "[::1]:8501"):
        assert local_visitor(Visitor("127.0.0.1", {"host": host}))[0], host
    assert local_visitor(Visitor("::1", HOST))[0]


@pytest.mark.parametrize("visitor, why", [
    (Visitor(None, HOST), "unknown"),  # no client context (AppTest, a future Streamlit)
    (Visitor("203.0.113.7", HOST), "another machine"),
    (Visitor("192.168.1.20", HOST), "another machine"),
    # a reverse proxy / tunnel on this machine connects from loopback for anyone
    (Visitor("127.0.0.1", {**HOST, "x-forwarded-for": "203.0.113.7"}), "proxy"),
    (Visitor("127.0.0.1", {**HOST, "x-forwarded-for": "127.0.0.1"}), "proxy"),
    (Visitor("127.0.0.1", {**HOST, "forwarded": "for=203.0.113.7"}), "proxy"),
    (Visitor("127.0.0.1", {**HOST, "x-real-ip": "203.0.113.7"}), "proxy"),
    # DNS rebinding: a foreign name that resolves to this machine
    (Visitor("127.0.0.1", {"host": "galaxy.example.org:8501"}), "loopback address"),
    (Visitor("127.0.0.1", {}), "loopback address"),
])
def test_strangers_are_not_local(visitor, why):
    local, reason = local_visitor(visitor)
    assert not local and why in reason


def test_headers_are_read_case_insensitively_and_repeats_kept():
    visitor = Visitor.from_headers("127.0.0.1", [("Host", "localhost"), ("X-Forwarded-For", "a"),
                                                 ("X-Forwarded-For", "b")])
    assert visitor.headers["x-forwarded-for"] == "a, b"
    assert not local_visitor(visitor)[0]


def test_a_trusted_proxy_is_judged_by_the_client_it_reports():
    trusted = trusted_proxies(" 127.0.0.1 , 10.0.0.2")
    assert trusted == {"127.0.0.1", "10.0.0.2"}
    through = Visitor("127.0.0.1", {**HOST, "x-forwarded-for": "203.0.113.7, 127.0.0.1"})
    assert local_visitor(through, trusted)[0]  # the proxy's own (last) entry says loopback
    stranger = Visitor("127.0.0.1", {**HOST, "x-forwarded-for": "127.0.0.1, 203.0.113.7"})
    assert not local_visitor(stranger, trusted)[0]  # a spoofed first entry does not count
    assert not local_visitor(stranger)[0]  # untrusted: forwarded at all means a stranger
    assert stranger.client_key(trusted) == "203.0.113.7"
    # untrusted, what it reports may be forged: every proxied visitor shares one throttle key
    assert stranger.client_key() == through.client_key() == "behind an untrusted proxy"
    assert Visitor("198.51.100.4", HOST).client_key() == "198.51.100.4"


def test_password_rules():
    assert password_matches("abc", "abc")
    assert not password_matches("abc", "abd")
    assert not password_matches("", "")
    assert not password_matches(None, "x")
    assert not password_matches("abc", None)


def test_password_is_compared_in_constant_time(monkeypatch):
    """A plain == leaks the matching prefix's length through timing; hmac's does not."""
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    assert password_matches("s3cret", "s3cret")
    assert not password_matches("s3cret", "nope")
    assert calls == [(b"s3cret", b"s3cret"), (b"s3cret", b"nope")]


def test_the_access_rule():
    local = Visitor("127.0.0.1", HOST)
    stranger = Visitor("203.0.113.7", {"host": "galaxy.example.org"})
    assert decide(local, None, False).admin and decide(local, None, False).local
    refused = decide(stranger, None, False)
    assert not refused.admin and not refused.can_unlock and "cannot be unlocked" in refused.reason
    locked = decide(stranger, "pw", False)
    assert not locked.admin and locked.can_unlock
    unlocked = decide(stranger, "pw", True)
    assert unlocked.admin and not unlocked.local
    assert not decide(stranger, None, True).admin  # no password set: nothing to unlock with
    # GALAXY_LOCAL_ADMIN=0: behind a header-less forwarder (socat, ssh -R) loopback proves
    # nothing, so even a local visitor needs the password
    strict = decide(local, "pw", False, local_admin=False)
    assert not strict.admin and strict.can_unlock and "GALAXY_LOCAL_ADMIN=0" in strict.reason
    assert decide(local, "pw", True, local_admin=False).admin


def test_password_attempts_are_throttled_with_a_growing_delay():
    now = [1000.0]
    throttle = PasswordThrottle(free=3, first_wait_s=2.0, max_wait_s=60.0, clock=lambda: now[0])
    keys = ("session:a", "client:203.0.113.7")
    for _ in range(2):
        assert throttle.try_password("pw", "guess", *keys) == (False, "wrong password")
    accepted, message = throttle.try_password("pw", "guess", *keys)
    assert not accepted and "next try in 2 s" in message
    # while throttled even the right password is not checked
    assert "too many wrong passwords" in throttle.try_password("pw", "pw", *keys)[1]
    # another session from the same client is throttled too
    assert throttle.wait_s("session:b", "client:203.0.113.7") == pytest.approx(2.0)
    now[0] += 2.0
    throttle.try_password("pw", "guess", *keys)
    assert throttle.wait_s(*keys) == pytest.approx(4.0)  # doubles
    for _ in range(10):
        now[0] += 100
        throttle.try_password("pw", "guess", *keys)
    assert throttle.wait_s(*keys) == pytest.approx(60.0)  # capped
    now[0] += 60
    assert throttle.try_password("pw", "pw", *keys) == (True, "admin password accepted")
    assert throttle.wait_s(*keys) == 0  # a success clears the count
    assert throttle.wait_s("client:198.51.100.1") == 0  # others were never slowed
