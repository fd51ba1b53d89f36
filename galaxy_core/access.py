"""Who may start training from the web page: loopback-only servers, or an admin password."""

from __future__ import annotations

import hmac
import ipaddress

PASSWORD_ENV = "GALAXY_ADMIN_PASSWORD"


def is_loopback(address: str | None) -> bool:
    """True only when the server listens on loopback alone (empty means every interface)."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def password_matches(configured: str | None, entered: str | None) -> bool:
    """Constant-time comparison; an unset or empty configured password never matches."""
    if not configured or entered is None:
        return False
    return hmac.compare_digest(configured.encode(), entered.encode())


def training_access(address: str | None, configured: str | None, entered: str | None):
    """(allowed, reason) for the training page."""
    if is_loopback(address):
        return True, f"the server listens only on loopback ({address})"
    if not configured:
        return False, (f"this server is reachable from other machines and no admin password is "
                       f"set: set {PASSWORD_ENV} (or admin_password in Streamlit secrets), or "
                       f"run with --server.address 127.0.0.1")
    if password_matches(configured, entered):
        return True, "admin password accepted"
    return False, "enter the admin password to train" if not entered else "wrong password"
