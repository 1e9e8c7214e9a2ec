"""Config loading, interpolation, env-only mode, and the validation table."""

from __future__ import annotations

from typing import Any

import pytest

from proxyapi.auth import hash_key
from proxyapi.config import (
    DEFAULT_MAX_BODY_BYTES,
    ConfigError,
    config_from_env,
    load_config,
    parse_config,
)

DIGEST = hash_key("k1")


def provider(**over: Any) -> dict[str, Any]:
    base = {"name": "up", "base_url": "http://127.0.0.1:1/v1", "models": ["m1"]}
    base.update(over)
    return base


def test_full_config_parses_with_defaults() -> None:
    cfg = parse_config(
        {
            "auth": {"keys": [{"name": "alice", "sha256": DIGEST.upper()}]},
            "providers": [provider(priority=2, timeout={"read": 9}), provider(name="b")],
        },
        environ={},
    )
    assert cfg.server.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert cfg.auth.keys[0].sha256 == DIGEST  # normalised to lowercase
    assert cfg.providers[0].timeout.read == 9.0 and cfg.providers[0].timeout.connect == 5.0
    assert cfg.providers[0].type == "openai"
    assert cfg.providers[1].priority == 1


def test_key_env_is_hashed_at_load_and_secret_not_in_repr() -> None:
    cfg = parse_config(
        {
            "auth": {"keys": [{"name": "a", "key_env": "A_KEY"}]},
            "providers": [provider(api_key_env="UP_KEY")],
        },
        environ={"A_KEY": "client-secret", "UP_KEY": "sk-upstream-secret"},
    )
    assert cfg.auth.keys[0].sha256 == hash_key("client-secret")
    assert cfg.providers[0].api_key == "sk-upstream-secret"
    assert "sk-upstream-secret" not in repr(cfg)
    assert cfg.secrets() == ["sk-upstream-secret"]


def test_interpolation_with_defaults_and_escape() -> None:
    cfg = parse_config(
        {
            "providers": [
                provider(
                    base_url="${HOST:-http://localhost:11434}/v1", models=["${MODEL}", "price$$"]
                )
            ]
        },
        environ={"MODEL": "llama3"},
    )
    assert cfg.providers[0].base_url == "http://localhost:11434/v1"
    assert cfg.providers[0].models == ("llama3", "price$")


@pytest.mark.parametrize(
    ("data", "environ", "expected"),
    [
        ({"sever": {}}, {}, "unknown config key 'sever'"),
        (
            {"server": {"max_body_bytes": "big"}},
            {},
            "server.max_body_bytes must be a whole number above 0, got 'big'",
        ),
        ({"server": {"max_body_bytes": 0}}, {}, "got 0"),
        (
            {"server": {"heartbeat_interval": True}},
            {},
            "server.heartbeat_interval must be a number above 0, got True",
        ),
        ({"auth": {"keys": {"name": "x"}}}, {}, "auth.keys must be a list"),
        (
            {"auth": {"keys": [{"name": "a"}]}},
            {},
            "auth.keys[0] (a) needs exactly one of 'sha256' or 'key_env'",
        ),
        (
            {"auth": {"keys": [{"name": "a", "sha256": "abc"}]}},
            {},
            "auth.keys[0].sha256 must be 64 hex characters",
        ),
        (
            {"auth": {"keys": [{"name": "a", "key_env": "NOPE"}]}},
            {},
            "auth.keys[0].key_env names 'NOPE', which is not set",
        ),
        ({"auth": {"keys": [{"sha256": DIGEST}]}}, {}, "auth.keys[0].name is required"),
        ({"auth": {"keys": [{"name": "a b", "sha256": DIGEST}]}}, {}, "auth.keys[0].name must be"),
        (
            {"auth": {"keys": [{"name": "a", "sha256": DIGEST}, {"name": "a", "key_env": "K"}]}},
            {"K": "x"},
            "duplicate value in auth.keys[].name: 'a'",
        ),
        (
            {"auth": {"keys": [{"name": "a", "sha256": DIGEST}, {"name": "b", "key_env": "K"}]}},
            {"K": "k1"},
            "two entries hold the same key",
        ),
        ({"auth": {"header": "X Key"}}, {}, "auth.header must be an HTTP header name, got 'X Key'"),
        ({"providers": {}}, {}, "providers must be a list"),
        (
            {"providers": [provider(type="bedrock")]},
            {},
            "providers[0] (up).type must be one of openai, azure, anthropic, mock, got 'bedrock'",
        ),
        (
            {"providers": [provider(base_url="ftp://x")]},
            {},
            "providers[0] (up).base_url must be a URL starting with http:// or https://, got 'ftp://x'",
        ),
        (
            {"providers": [provider(models=[])]},
            {},
            "providers[0] (up).models must be a non-empty list",
        ),
        ({"providers": [provider(models=None)]}, {}, "providers[0] (up).models is required"),
        (
            {"providers": [provider(priority="high")]},
            {},
            "providers[0] (up).priority must be a whole number, got 'high'",
        ),
        (
            {"providers": [provider(timeout={"read": -1})]},
            {},
            "providers[0] (up).timeout.read must be a number above 0, got -1",
        ),
        (
            {"providers": [provider(timeout={"total": 1})]},
            {},
            "unknown config key 'providers[0] (up).timeout.total'",
        ),
        (
            {"providers": [provider(api_key_env="MISSING_KEY")]},
            {},
            "api_key_env names 'MISSING_KEY', which is not set or empty",
        ),
        ({"providers": [provider(), provider()]}, {}, "duplicate value in providers[].name: 'up'"),
        (
            {"providers": [provider(base_url="${NOPE}")]},
            {},
            "providers[0].base_url uses ${NOPE}, which is not set",
        ),
        (["not", "a", "mapping"], {}, "must be a mapping at the top level"),
        (
            {"providers": [provider(retry={"strategy": "random"})]},
            {},
            "providers[0] (up).retry.strategy must be one of exponential, immediate, adaptive, got 'random'",
        ),
        (
            {"providers": [provider(retry={"max_attempts": 0})]},
            {},
            "providers[0] (up).retry.max_attempts must be a whole number above 0, got 0",
        ),
        (
            {"providers": [provider(retry={"base_delay": 5, "max_delay": 1})]},
            {},
            "providers[0] (up).retry.max_delay (1) must be at least base_delay (5)",
        ),
        (
            {"providers": [provider(retry={"jitter": 1})]},
            {},
            "unknown config key 'providers[0] (up).retry.jitter'",
        ),
        (
            {"providers": [provider(breaker={"fail_max": -2})]},
            {},
            "providers[0] (up).breaker.fail_max must be a whole number above 0, got -2",
        ),
        (
            {"server": {"request_timeout": 700}},
            {},
            "server.request_timeout (700) must not exceed server.max_request_timeout (600)",
        ),
        (
            {"models": {"fast": "up/m1"}},
            {},
            "models.fast must be a non-empty list of 'provider/model' targets",
        ),
        (
            {"providers": [provider()], "models": {"fast": ["nope/m1"]}},
            {},
            "models.fast[0] must be '<provider>/<model>' naming a configured provider (up), got 'nope/m1'",
        ),
        (
            {"providers": [provider()], "models": {"fast": ["up/m2"]}},
            {},
            "models.fast[0]: provider 'up' does not list 'm2' in its models",
        ),
        (
            {"redis": {"url": "http://user:hunter2@h"}},
            {},
            "redis.url (or REDIS_URL) must be a URL starting with redis:// or rediss:// or unix:// or redis+sentinel:// or redis+cluster://, got http://...",
        ),
        ({}, {"REDIS_URL": "localhost:6379"}, "got (no scheme)"),
        (
            {"providers": [provider(type="azure", deployments={"m1": ".."})]},
            {},
            "providers[0] (up).deployments maps 'm1' to '..', which is not a deployment name",
        ),
        ({"server": {"client_timeout": 0}}, {}, "server.client_timeout must be a number above 0"),
        ({"rate_limits": {"failed_auth": "lots"}}, {}, "rate_limits.failed_auth has 'lots'"),
    ],
)
def test_validation_names_key_and_value(data: Any, environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ=environ)
    assert expected in str(info.value)


def test_errors_never_show_secret_values() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"auth": {"keys": [{"name": "a", "sha256": "sk-live-secret-not-a-digest"}]}}, environ={}
        )
    assert "sk-live-secret" not in str(info.value)


def test_env_only_mode() -> None:
    cfg = config_from_env(
        {
            "PROXYAPI_KEYS": "k1, k2,,",
            "OPENAI_API_KEY": "sk-x",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
        }
    )
    assert [k.name for k in cfg.auth.keys] == ["env-key-1", "env-key-2"]
    assert cfg.auth.keys[0].sha256 == hash_key("k1")
    (p,) = cfg.providers
    assert (p.name, p.base_url, p.models, p.api_key) == (
        "openai",
        "http://127.0.0.1:9/v1",
        ("*",),
        "sk-x",
    )
    assert cfg.source == "environment"


def test_env_only_mode_has_admin_keys_for_managing_the_others() -> None:
    cfg = config_from_env({"PROXYAPI_KEYS": "k1", "PROXYAPI_ADMIN_KEYS": " a1 ,a2"})
    keys = [(k.name, k.admin, k.sha256) for k in cfg.auth.keys]
    assert keys == [
        ("env-key-1", False, hash_key("k1")),
        ("env-admin-1", True, hash_key("a1")),
        ("env-admin-2", True, hash_key("a2")),
    ]


def test_env_only_mode_with_model_list_and_no_key() -> None:
    cfg = config_from_env(
        {"OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_MODELS": "llama3,qwen"}
    )
    assert cfg.providers[0].models == ("llama3", "qwen")
    assert cfg.providers[0].api_key is None
    assert cfg.auth.keys == ()


def test_empty_environment_gives_no_keys_and_no_providers() -> None:
    cfg = config_from_env({})
    assert cfg.auth.keys == () and cfg.providers == ()


def test_load_config_reads_file_from_env(tmp_config: Any) -> None:
    path = tmp_config(
        "providers:\n  - name: local\n    base_url: http://127.0.0.1:8/v1\n    models: [m]\n"
    )
    cfg = load_config(environ={"PROXYAPI_CONFIG": str(path)})
    assert cfg.providers[0].name == "local" and cfg.source == str(path)


def test_load_config_errors_on_bad_yaml_and_missing_file(tmp_config: Any) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_config("providers: [\n")), environ={})
    with pytest.raises(ConfigError, match=r"cannot read config file '/nonexistent\.yaml'"):
        load_config("/nonexistent.yaml", environ={})


def test_default_file_in_working_directory(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proxyapi.yaml").write_text("server: {max_body_bytes: 123}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).server.max_body_bytes == 123


def test_resilience_settings_and_aliases_parse() -> None:
    cfg = parse_config(
        {
            "server": {"request_timeout": 30, "first_token_timeout": 5},
            "providers": [
                provider(
                    retry={"strategy": "adaptive", "max_attempts": 4}, breaker={"fail_max": 2}
                ),
                provider(name="b", models=["gpt-*"]),
            ],
            "models": {"fast": ["b/gpt-4o-mini", "up/m1"]},
            "redis": {"timeout": 0.2},
        },
        environ={"REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0"},
    )
    assert cfg.server.request_timeout == 30 and cfg.server.first_token_timeout == 5
    assert (
        cfg.providers[0].retry.strategy == "adaptive" and cfg.providers[0].retry.max_attempts == 4
    )
    assert cfg.providers[0].breaker.fail_max == 2 and cfg.providers[0].breaker.reset_timeout == 30
    assert cfg.providers[1].retry.strategy == "exponential"
    assert cfg.aliases == {"fast": (("b", "gpt-4o-mini"), ("up", "m1"))}
    assert cfg.redis.url == "redis://:s3cret@127.0.0.1:6379/0" and cfg.redis.timeout == 0.2
    assert "s3cret" in cfg.secrets() and "s3cret" not in repr(cfg)


def test_secrets_lose_the_whitespace_a_copy_paste_leaves_around_them() -> None:
    cfg = parse_config(
        {
            "auth": {"keys": [{"name": "a", "key_env": "A_KEY"}]},
            "providers": [provider(api_key_env="UP_KEY")],
        },
        environ={"A_KEY": " client-secret\n", "UP_KEY": "sk-upstream-secret\r\n"},
    )
    assert cfg.auth.keys[0].sha256 == hash_key("client-secret")
    assert cfg.providers[0].api_key == "sk-upstream-secret"


@pytest.mark.parametrize("value", ["sk-one\nsk-two", "sk-a b", "sk-\x00x"])
def test_a_secret_with_whitespace_inside_is_refused_without_showing_it(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": [provider(api_key_env="UP_KEY")]}, environ={"UP_KEY": value})
    message = str(info.value)
    assert "api_key_env names 'UP_KEY', whose value has whitespace or control characters" in message
    assert "sk-" not in message


def test_provider_header_values_may_not_break_the_header_and_are_never_shown() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": [provider(headers={"X-Title": "a\r\nX-Evil: 1"})]}, environ={})
    assert "headers.X-Title has a control character" in str(info.value)
    assert "Evil" not in str(info.value)
    cfg = parse_config({"providers": [provider(headers={"X-Title": " app "})]}, environ={})
    assert cfg.providers[0].headers == {"X-Title": "app"}


def test_failed_auth_limit_is_on_by_default_and_can_be_turned_off() -> None:
    assert parse_config({}, environ={}).rate_limits.failed_auth == ("20/minute",)
    off = parse_config({"rate_limits": {"failed_auth": "off"}}, environ={})
    assert off.rate_limits.failed_auth == ()
    assert not off.rate_limits.any_configured((), ())
