from galaxy_core.access import is_loopback, password_matches, training_access


def test_loopback_detection():
    for address in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.5"):
        assert is_loopback(address), address
    for address in (None, "", "0.0.0.0", "192.168.1.4", "::", "example.org"):
        assert not is_loopback(address), address


def test_password_rules():
    assert password_matches("abc", "abc")
    assert not password_matches("abc", "abd")
    assert not password_matches("", "")
    assert not password_matches(None, "x")
    assert not password_matches("abc", None)


def test_training_access_reasons():
    assert training_access("127.0.0.1", None, None)[0]
    allowed, reason = training_access("0.0.0.0", None, None)
    assert not allowed and "no admin password" in reason
    assert not training_access("0.0.0.0", "pw", "nope")[0]
    assert training_access("0.0.0.0", "pw", "pw")[0]
