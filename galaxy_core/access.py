"""Who may do what: the one access rule for every privileged action of the web app.

Every visitor is a stranger unless proven local. Strangers may classify, explain and browse
the allowed datasets; everything else (training, stopping a run, activating a model, picking a
model other than the app's, reading a path outside the allowed datasets) is an *admin* action.
A visitor is an admin when it is local or has entered the admin password in its session.

A visitor counts as **local** only when all three hold for the request that opened its session:
- the TCP peer is a loopback address;
- it carries no forwarding header (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``, ...):
  a reverse proxy, tunnel or port forwarder on this machine also connects from loopback, on
  behalf of anyone;
- its ``Host`` is a loopback name (``localhost``, ``127.x.x.x``, ``[::1]``), so a page loaded
  under a foreign name (DNS rebinding) is not local.

An admin who publishes the app behind a proxy on this machine and wants to be recognised as
local through it names that proxy in ``GALAXY_TRUSTED_PROXIES`` (comma-separated addresses).
Requests from a trusted proxy are then judged by the client address the proxy reports (the last
``X-Forwarded-For`` entry, which the proxy itself appended) instead of the peer.

Password attempts are throttled per session and per client with a growing delay
(``PasswordThrottle``); the password is compared in constant time and never stored.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from dataclasses import dataclass, field

PASSWORD_ENV = "GALAXY_ADMIN_PASSWORD"
TRUSTED_PROXIES_ENV = "GALAXY_TRUSTED_PROXIES"
# "0": nobody counts as local, everyone needs the password (behind a forwarder that adds no
# header, such as socat, ssh -R or ngrok tcp, or on a machine whose browser visits other sites)
LOCAL_ADMIN_ENV = "GALAXY_LOCAL_ADMIN"
# headers by which a proxy says it acts for someone else (lower case)
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host",
                      "x-client-ip", "true-client-ip", "cf-connecting-ip")


def is_loopback(address: str | None) -> bool:
    """True for a loopback IP address or the name ``localhost``; False for anything else."""
    if not address:
        return False
    address = address.strip()
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str | None) -> str:
    """The name part of a ``Host`` header: ``localhost:8501`` -> ``localhost``,
    ``[::1]:8501`` -> ``::1``."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        return host.split(":")[0]
    return host


@dataclass(frozen=True)
class Visitor:
    """What the server knows of a session's request: the TCP peer (None when unknown) and its
    headers (names in lower case)."""

    peer: str | None
    headers: dict = field(default_factory=dict)

    @classmethod
    def from_headers(cls, peer: str | None, headers) -> "Visitor":
        pairs = headers.items() if hasattr(headers, "items") else headers
        merged: dict[str, str] = {}
        for name, value in pairs:  # a repeated header keeps every value
            name = str(name).lower()
            merged[name] = f"{merged[name]}, {value}" if name in merged else str(value)
        return cls(peer=peer, headers=merged)

    def forwarding_headers(self) -> list[str]:
        return [name for name in FORWARDING_HEADERS if name in self.headers]

    def client_key(self, trusted_proxies=()) -> str:
        """Who this visitor is for throttling: the reported client behind a trusted proxy; every
        visitor behind an untrusted one shares one key (what it reports can be forged, so a
        forger could otherwise take a fresh key for every try); else the peer."""
        if self.forwarding_headers():
            if self.peer in trusted_proxies and "x-forwarded-for" in self.headers:
                return self.headers["x-forwarded-for"].split(",")[-1].strip()
            return "behind an untrusted proxy"
        return self.peer or "unknown"


def trusted_proxies(setting: str | None) -> frozenset[str]:
    """The addresses named in ``GALAXY_TRUSTED_PROXIES`` (comma-separated)."""
    return frozenset(part.strip() for part in (setting or "").split(",") if part.strip())


def local_visitor(visitor: Visitor, trusted=frozenset()) -> tuple[bool, str]:
    """(local, why): the rule in the module docstring."""
    if visitor.peer is None:
        return False, "the connection's address is unknown"
    peer = visitor.peer
    forwarded = visitor.forwarding_headers()
    if peer in trusted and forwarded:
        reported = visitor.headers.get("x-forwarded-for", "").split(",")[-1].strip()
        if not is_loopback(reported):
            return False, "the request comes through a proxy from another machine"
    elif not is_loopback(peer):
        return False, "the request comes from another machine"
    elif forwarded:
        return False, "the request comes through a proxy or forwarder"
    if not is_loopback(host_name(visitor.headers.get("host"))):
        return False, "the page was not opened under a loopback address"
    return True, "you are on this machine"


def password_matches(configured: str | None, entered: str | None) -> bool:
    """Constant-time comparison; an unset or empty configured password never matches."""
    if not configured or entered is None:
        return False
    return hmac.compare_digest(configured.encode(), entered.encode())


@dataclass(frozen=True)
class Access:
    """A session's standing: ``admin`` or not, why, and whether a password could unlock it."""

    admin: bool
    reason: str
    can_unlock: bool
    local: bool = False


def decide(visitor: Visitor, configured_password: str | None, unlocked: bool,
           trusted=frozenset(), local_admin: bool = True) -> Access:
    """The one access rule: local visitors (unless ``local_admin`` is off) and sessions unlocked
    with the password are admins."""
    local, why = local_visitor(visitor, trusted)
    if local and not local_admin:
        local, why = False, f"local visitors need the password here ({LOCAL_ADMIN_ENV}=0)"
    if local:
        return Access(True, why, False, local=True)
    if unlocked and configured_password:
        return Access(True, "admin password accepted", False)
    if not configured_password:
        return Access(False, f"{why}, and it cannot be unlocked from a browser here", False)
    return Access(False, f"{why}; enter the admin password", True)


class PasswordThrottle:
    """A growing delay between password attempts, per key (a session, a client address).

    The first ``free`` failures cost nothing; after that each failure doubles the wait before
    the next attempt is even checked, up to ``max_wait_s``. A success clears the key."""

    def __init__(self, free: int = 3, first_wait_s: float = 2.0, max_wait_s: float = 300.0,
                 clock=time.monotonic):
        self.free, self.first_wait_s, self.max_wait_s = free, first_wait_s, max_wait_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._blocked_until: dict[str, float] = {}

    def wait_s(self, *keys: str) -> float:
        """Seconds before any of ``keys`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([self._blocked_until.get(k, 0.0) - now for k in keys] + [0.0])

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                count = self._failures.get(key, 0) + 1
                self._failures[key] = count
                if count >= self.free:
                    wait = min(self.max_wait_s, self.first_wait_s * 2 ** (count - self.free))
                    self._blocked_until[key] = now + wait

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
                self._blocked_until.pop(key, None)

    def try_password(self, configured: str | None, entered: str, *keys: str) -> tuple[bool, str]:
        """(accepted, message). A throttled attempt is refused without being checked."""
        wait = self.wait_s(*keys)
        if wait > 0:
            return False, f"too many wrong passwords: try again in {wait:.0f} s"
        if password_matches(configured, entered):
            self.succeeded(*keys)
            return True, "admin password accepted"
        self.failed(*keys)
        wait = self.wait_s(*keys)
        return False, "wrong password" + (f"; next try in {wait:.0f} s" if wait > 0 else "")
