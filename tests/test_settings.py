"""Config loading: file + env precedence, token sources, and errors that name the key."""

from __future__ import annotations

import pytest

from controller.cli import main
from controller.errors import ConfigError
from controller.settings import load_settings


def write(tmp_path, text: str):
    p = tmp_path / "governor.yaml"
    p.write_text(text)
    return p


def test_defaults_without_file():
    """With no file every group has working defaults, pointing at the real API."""
    s = load_settings(None, env={})
    assert s.api.base_url == "https://api.endpoints.huggingface.cloud/v2"
    assert s.loop.tick_interval_s == 15
    assert s.token is None
    assert s.defaults.policies == {"slo_target": {}}


def test_example_config_is_valid():
    """The shipped example config passes validation."""
    s = load_settings("examples/governor.yaml", env={})
    assert s.namespaces == ["my-org"]
    assert s.loop.dry_run is True


def test_env_overrides_file(tmp_path, monkeypatch):
    """GOVERNOR_* nested overrides beat the file; other file keys survive the merge."""
    p = write(tmp_path, "loop: {tick_interval_s: 30, dry_run: false}\nnamespaces: [a]\n")
    monkeypatch.setenv("GOVERNOR_LOOP__DRY_RUN", "true")
    s = load_settings(p, env={})
    assert s.loop.dry_run is True
    assert s.loop.tick_interval_s == 30
    assert s.namespaces == ["a"]


def test_token_from_env_then_file(tmp_path):
    """HF_TOKEN wins; otherwise api.token_file; the token never shows in dumps or repr."""
    tf = tmp_path / "tok"
    tf.write_text("hf_file_secret\n")
    p = write(tmp_path, f"api: {{token_file: {tf}}}\n")
    assert load_settings(p, env={}).token.get_secret_value() == "hf_file_secret"
    s = load_settings(p, env={"HF_TOKEN": "hf_env_secret"})
    assert s.token.get_secret_value() == "hf_env_secret"
    assert "hf_env_secret" not in repr(s)
    assert "hf_env_secret" not in str(s.redacted())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("loop: {tick_interval_s: -5}\n", "loop.tick_interval_s", id="negative-tick"),
        pytest.param(
            "loop: {tick_intervall_s: 5}\n", "loop.tick_intervall_s: unknown key", id="typo-key"
        ),
        pytest.param("nonsense: 1\n", "nonsense: unknown key", id="unknown-top"),
        pytest.param(
            "defaults: {floor: 5, ceiling: 2}\n",
            "floor (5) must be <= ceiling (2)",
            id="floor-above-ceiling",
        ),
        pytest.param("server: {listen: 'nope'}\n", "server.listen", id="bad-listen"),
        pytest.param("api: {base_url: 'ftp://x'}\n", "api.base_url", id="bad-url"),
        pytest.param(
            "defaults: {policies: {pending_requests: {target: 2}}}\n",
            "defaults.policies.pending_requests.target: unknown key",
            id="bad-param",
        ),
        pytest.param(
            "defaults: {policies: {pending_requests: {target_per_replica: 0}}}\n",
            "defaults.policies.pending_requests.target_per_replica",
            id="zero-target",
        ),
        pytest.param(
            "defaults: {policies: {no_such_policy: {}}}\n",
            "unknown policy 'no_such_policy'",
            id="unknown-policy",
        ),
        pytest.param(
            "endpoints: [{match: {names: [x]}, policies: {pending_requests: {window_s: -1}}}]\n",
            "endpoints[0].policies.pending_requests.window_s",
            id="rule-param",
        ),
        pytest.param("loop: [1, 2\n", "not valid YAML at line", id="bad-yaml"),
        pytest.param("- a\n- b\n", "top level must be a mapping", id="not-mapping"),
        pytest.param("token: abc\n", "HF_TOKEN", id="token-in-file"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, expected):
    """Every bad value or unknown key is reported by its path, not as a traceback."""
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), env={})
    assert expected in str(err.value)


def test_rules_merge_in_order(tmp_path):
    """Later matching rules override earlier ones; policy params merge key by key."""
    p = write(
        tmp_path,
        """
defaults:
  floor: 1
  ceiling: 4
  policies: {pending_requests: {target_per_replica: 2, window_s: 60}}
endpoints:
  - match: {globs: ["chat-*"]}
    ceiling: 8
    policies: {pending_requests: {target_per_replica: 3}}
  - match: {tags: [night]}
    floor: 0
""",
    )
    s = load_settings(p, env={})
    es = s.endpoint_settings("org", "chat-a", ["night"])
    assert (es.floor, es.ceiling) == (0, 8)
    assert es.policies["pending_requests"] == {"target_per_replica": 3, "window_s": 60}
    other = s.endpoint_settings("org", "embed", [])
    assert (other.floor, other.ceiling) == (1, 4)


@pytest.mark.parametrize(
    ("ns", "name", "tags", "managed"),
    [
        pytest.param("org", "chat", [], True, id="name"),
        pytest.param("org", "prod-x", [], True, id="glob"),
        pytest.param("org", "misc", ["governor"], True, id="tag"),
        pytest.param("org", "prod-y", ["do-not-autoscale"], False, id="excluded-tag"),
        pytest.param("org", "other", ["team"], False, id="unselected"),
        pytest.param("other-org", "exact", [], False, id="ns-qualified-mismatch"),
        pytest.param("org", "exact", [], True, id="ns-qualified"),
    ],
)
def test_manage_selection(tmp_path, ns, name, tags, managed):
    """Only endpoints matched by manage.* (and not excluded) are managed."""
    p = write(
        tmp_path,
        """
manage:
  names: [chat, org/exact]
  globs: ["prod-*"]
  tags: [governor]
  exclude_tags: [do-not-autoscale]
""",
    )
    assert load_settings(p, env={}).is_managed(ns, name, tags) is managed


def test_check_config_cli(tmp_path, capsys):
    """`governor check-config` prints OK for a good file and exits 2 naming the key otherwise."""
    good = write(tmp_path, "namespaces: [a]\n")
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop: {dry_run: maybe}\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "loop.dry_run" in err
    assert "Traceback" not in err


def test_missing_file(tmp_path):
    """A missing config file is a clear error."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_emulator_scenario_file_errors_name_the_field(tmp_path):
    """A bad `governor emulator --scenario` file is reported by field, and the example loads."""
    from controller.emulator.scenario import load_scenario

    spec = load_scenario("examples/emulator-scenario.yaml")
    assert [e.name for e in spec.endpoints] == ["chat-llm", "nightly-batch"]
    bad = tmp_path / "s.yaml"
    bad.write_text("endpoints: [{name: x, max_replica: 0, colour: red}]\n")
    with pytest.raises(ConfigError) as err:
        load_scenario(bad)
    assert "endpoints.0.max_replica" in str(err.value)
    assert "endpoints.0.colour: unknown key" in str(err.value)
    bad.write_text("endpoints: [{name: x, load: {kind: wobble}}]\n")
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.load"):
        load_scenario(bad)


# -- issue 18: a config that passes check-config runs ------------------------------------------


def _write(tmp_path, text: str):
    p = tmp_path / "g.yaml"
    p.write_text(text)
    return p


def test_duplicate_keys_are_rejected_with_their_line(tmp_path):
    p = _write(tmp_path, "loop: {dry_run: true}\nnamespaces: [a]\nloop: {tick_interval_s: 5}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p, env={})
    assert "duplicate key 'loop' at line 3 (first at line 1)" in str(exc.value)


def test_nested_duplicate_keys_are_rejected(tmp_path):
    p = _write(tmp_path, "loop:\n  dry_run: true\n  dry_run: false\n")
    with pytest.raises(ConfigError, match="duplicate key 'dry_run' at line 3"):
        load_settings(p, env={})


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    p = _write(tmp_path, f"scrape: {{max_age_s: {value}}}\n")
    with pytest.raises(ConfigError, match=r"scrape\.max_age_s: must be a finite number"):
        load_settings(p, env={})


def test_non_finite_env_override_is_refused(monkeypatch):
    monkeypatch.setenv("GOVERNOR_SCRAPE__MAX_AGE_S", "inf")
    with pytest.raises(ConfigError, match=r"scrape\.max_age_s"):
        load_settings(None, env={})


def test_floor_from_defaults_above_a_rule_ceiling_is_an_error(tmp_path):
    p = _write(
        tmp_path, "defaults: {floor: 3}\nendpoints:\n  - match: {names: [x]}\n    ceiling: 2\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(p, env={})
    assert "defaults + endpoints[0]: floor (3) must be <= ceiling (2)" in str(exc.value)


def test_two_rules_that_together_cross_floor_and_ceiling_are_an_error(tmp_path):
    p = _write(
        tmp_path,
        "endpoints:\n"
        "  - match: {tags: [big]}\n    floor: 5\n    ceiling: 8\n"
        "  - match: {tags: [small]}\n    ceiling: 2\n",
    )
    with pytest.raises(ConfigError, match=r"defaults \+ endpoints\[0\] \+ endpoints\[1\]"):
        load_settings(p, env={})


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://[::1/v2", "not a valid URL"),
        ("http://h:99999/v2", "not a valid URL"),
        ("http:///v2", "has no host"),
        ("https://h/v2?x=1", "query"),
    ],
)
def test_bad_api_urls_are_refused(url, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(None, overrides={"api": {"base_url": url}}, env={})


@pytest.mark.parametrize(
    ("listen", "needle"),
    [
        ("no-such-host.invalid:9108", "cannot listen on host"),
        ("::1:9108", "in brackets"),
        ("127.0.0.1:99999", "0..65535"),
    ],
)
def test_bad_listen_addresses_are_refused(listen, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(None, overrides={"server": {"listen": listen}}, env={})


def test_good_listen_addresses_pass():
    for listen in ("127.0.0.1:0", "[::1]:9108", "0.0.0.0:9108", "localhost:9108"):
        load_settings(None, overrides={"server": {"listen": listen}}, env={})


def test_non_utf8_config_is_one_line_with_exit_2(tmp_path, capsys):
    p = tmp_path / "g.yaml"
    p.write_bytes(b"loop: {dry_run: true}\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 28, line 2\)"):
        load_settings(p, env={})
    for argv in (["check-config", "-c", str(p)], ["run", "--once", "-c", str(p)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "not UTF-8" in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
