"""Unit tests for config: typed environment reads whose errors name the variable."""

from __future__ import annotations

import pytest

from config import ConfigError, Env, ReadLog, is_loopback, variables


def test_env_text_uses_the_default_when_unset_or_empty():
    env = Env({"EMPTY": "", "SET": "0.0.0.0"})
    assert (env.text("UNSET", "d"), env.text("EMPTY", "d"), env.text("SET", "d")) == ("d", "d", "0.0.0.0")


def test_env_integer_reads_values_and_defaults():
    env = Env({"PORT": "9090", "EMPTY": ""})
    assert (env.integer("PORT", 1), env.integer("EMPTY", 7), env.integer("UNSET", 8)) == (9090, 7, 8)


@pytest.mark.parametrize(("raw", "minimum", "message"), [
    ("eighty", 0, "PORT must be an integer, got 'eighty'"),
    ("8.5", 0, "PORT must be an integer, got '8.5'"),
    ("-1", 0, "PORT must be >= 0, got -1"),
    ("0", 1, "PORT must be >= 1, got 0"),
])
def test_env_integer_errors_name_the_variable_and_the_value(raw, minimum, message):
    with pytest.raises(ConfigError) as info:
        Env({"PORT": raw}).integer("PORT", 8080, minimum=minimum)
    assert str(info.value) == message


def test_env_number_reads_values_and_defaults():
    env = Env({"GRACE": "2.5", "WHOLE": "3"})
    assert (env.number("GRACE", 1.0), env.number("WHOLE", 1.0), env.number("UNSET", 1.5)) == (2.5, 3.0, 1.5)


@pytest.mark.parametrize(("raw", "minimum", "message"), [
    ("soon", 0.0, "GRACE must be a number, got 'soon'"),
    ("-0.5", 0.0, "GRACE must be >= 0.0, got -0.5"),
    ("0.01", 0.05, "GRACE must be >= 0.05, got 0.01"),
    ("nan", 0.0, "GRACE must be a finite number, got nan"),
])
def test_env_number_errors_name_the_variable_and_the_value(raw, minimum, message):
    with pytest.raises(ConfigError) as info:
        Env({"GRACE": raw}).number("GRACE", 1.0, minimum=minimum)
    assert str(info.value) == message


@pytest.mark.parametrize("raw", ["inf", "Infinity", "1e999"])
def test_env_number_rejects_infinity_which_no_timeout_or_wait_accepts(raw):
    """socket.settimeout(inf) and Condition.wait_for(..., inf) raise OverflowError, so an
    infinite SHUTDOWN_GRACE_SECONDS or WORKER_TIMEOUT_SECONDS must fail at start-up."""
    with pytest.raises(ConfigError) as info:
        Env({"GRACE": raw}).number("GRACE", 1.0)
    assert str(info.value) == f"GRACE must be a finite number, got {raw}"


def test_env_level_defaults_to_info_and_is_case_insensitive():
    assert (Env({}).level(), Env({"LOG_LEVEL": ""}).level(), Env({"LOG_LEVEL": "debug"}).level()) == (
        "INFO", "INFO", "DEBUG")


def test_env_level_error_lists_the_accepted_levels():
    with pytest.raises(ConfigError) as info:
        Env({"LOG_LEVEL": "trace"}).level()
    assert str(info.value) == "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'TRACE'"


def test_env_secret_is_none_when_unset_or_empty_and_the_value_otherwise():
    env = Env({"EMPTY": "", "TOKEN": "Zm9vYmFy-._~+/0123456789=="})
    assert (env.secret("UNSET"), env.secret("EMPTY"), env.secret("TOKEN")) == (
        None, None, "Zm9vYmFy-._~+/0123456789==")


@pytest.mark.parametrize("raw", ["fifteen-chars-x", "sixteen chars ok", "sixteen-chars-ok\n", "sixteen-chärs-ok",
                                 "=sixteen-chars-ok"])
def test_env_secret_refuses_what_cannot_be_a_bearer_token_without_repeating_it(raw):
    with pytest.raises(ConfigError) as info:
        Env({"WORKER_TOKEN": raw}).secret("WORKER_TOKEN")
    assert str(info.value) == (
        "WORKER_TOKEN must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (a bearer token, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'); "
        f"got a value of {len(raw)} characters")
    assert raw.strip() not in str(info.value)


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("worker.local", False), ("", False),
])
def test_is_loopback_is_true_only_for_addresses_that_serve_this_machine_alone(host, expected):
    assert is_loopback(host) is expected


def test_variables_lists_each_read_once_in_order_with_its_default_as_shown():
    def from_env(environ):
        env = Env(environ)
        return (env.text("HOST", "127.0.0.1"), env.port(8080), env.number("GRACE", 20.0), env.number("HALF", 0.5),
                env.secret("TOKEN"), env.text("TABLE", ""), env.level(), env.text("HOST", "again"),
                env.integer("INTERVAL_MS", 1000 if environ.get("TABLE") else 0))

    assert variables(from_env, {"TABLE": "jobs"}) == [
        ("HOST", "127.0.0.1"), ("PORT", "8080"), ("GRACE", "20"), ("HALF", "0.5"), ("TOKEN", "unset"),
        ("TABLE", "unset"), ("LOG_LEVEL", "INFO"), ("INTERVAL_MS", "0; 1000 when TABLE is set")]


def test_a_read_log_is_a_plain_mapping_of_the_environment_it_wraps():
    log = ReadLog({"A": "1"})
    assert (dict(log), len(log), Env(log).integer("A", 5), log.reads) == ({"A": "1"}, 1, 1, {"A": 5})
