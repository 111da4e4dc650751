"""The HF token is found where huggingface_hub finds it, first line only, and never leaks.

huggingface_hub (src/huggingface_hub/utils/_auth.py `get_token`, constants.py): `HF_TOKEN`
(then the older `HUGGING_FACE_HUB_TOKEN`), else the file at `HF_TOKEN_PATH`, which defaults to
`$HF_HOME/token`, `HF_HOME` to `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
Governor puts its own `api.token_file` between the variable and the login cache.
"""

from __future__ import annotations

import pytest

from controller.cli import main
from controller.errors import ConfigError
from controller.settings import hf_token_path, load_settings


def _cfg(tmp_path, text: str = "namespaces: [a]\n"):
    p = tmp_path / "governor.yaml"
    p.write_text(text)
    return p


def _token(tmp_path, env, text="namespaces: [a]\n"):
    s = load_settings(_cfg(tmp_path, text), env=env)
    return (s.token.get_secret_value() if s.token else None), s.token_source


def test_the_hf_auth_login_cache_under_home_is_read(tmp_path):
    home = tmp_path / "home"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text("hf_cached_login\n")
    tok, src = _token(tmp_path, {"HOME": str(home)})
    assert tok == "hf_cached_login"
    assert str(home / ".cache" / "huggingface" / "token") in src
    assert "hf_cached_login" not in src


def test_hf_home_and_xdg_cache_home_move_the_cache(tmp_path):
    (tmp_path / "xdg" / "huggingface").mkdir(parents=True)
    (tmp_path / "xdg" / "huggingface" / "token").write_text("hf_xdg")
    (tmp_path / "hfh").mkdir()
    (tmp_path / "hfh" / "token").write_text("hf_hfhome")
    env = {"HOME": str(tmp_path / "nohome"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert _token(tmp_path, env)[0] == "hf_xdg"
    assert _token(tmp_path, {**env, "HF_HOME": str(tmp_path / "hfh")})[0] == "hf_hfhome"


def test_hf_token_path_replaces_the_home_file(tmp_path):
    (tmp_path / "hfh").mkdir()
    (tmp_path / "hfh" / "token").write_text("hf_hfhome")
    (tmp_path / "elsewhere").write_text("hf_path\n")
    env = {"HF_HOME": str(tmp_path / "hfh"), "HF_TOKEN_PATH": str(tmp_path / "elsewhere")}
    tok, src = _token(tmp_path, env)
    assert tok == "hf_path"
    assert src.startswith("HF_TOKEN_PATH")
    # A HF_TOKEN_PATH that does not exist means "not logged in", as in huggingface_hub.
    env["HF_TOKEN_PATH"] = str(tmp_path / "missing")
    assert _token(tmp_path, env) == (None, "")


def test_order_hf_token_then_token_file_then_cache(tmp_path):
    (tmp_path / "hfh").mkdir()
    (tmp_path / "hfh" / "token").write_text("hf_cache")
    (tmp_path / "tf").write_text("hf_file\n")
    with_file = f"namespaces: [a]\napi: {{token_file: {tmp_path / 'tf'}}}\n"
    env = {"HF_HOME": str(tmp_path / "hfh")}
    assert _token(tmp_path, env) == ("hf_cache", f"the hf auth login cache ({tmp_path}/hfh/token)")
    assert _token(tmp_path, env, with_file)[0] == "hf_file"
    assert _token(tmp_path, {**env, "HUGGING_FACE_HUB_TOKEN": "hf_old"}, with_file)[0] == "hf_old"
    both = {**env, "HF_TOKEN": "hf_env", "HUGGING_FACE_HUB_TOKEN": "hf_old"}
    assert _token(tmp_path, both, with_file) == ("hf_env", "HF_TOKEN")


@pytest.mark.parametrize("where", ["HF_TOKEN_PATH", "token_file"])
def test_only_the_first_line_of_a_token_file_is_the_token(tmp_path, where):
    secret_rest = "second-line-secret-comment"
    f = tmp_path / "tokfile"
    f.write_text(f"  hf_first_line  \r\n# {secret_rest}\n")
    text = f"namespaces: [a]\napi: {{token_file: {f}}}\n" if where == "token_file" else None
    env = {"HF_TOKEN_PATH": str(f)} if where == "HF_TOKEN_PATH" else {"HF_HOME": str(tmp_path)}
    tok, _ = _token(tmp_path, env, text or "namespaces: [a]\n")
    assert tok == "hf_first_line"


def test_an_empty_cache_file_is_no_token_but_an_empty_token_file_is_an_error(tmp_path):
    (tmp_path / "token").write_text("\n")
    assert _token(tmp_path, {"HF_HOME": str(tmp_path)}) == (None, "")
    (tmp_path / "tf").write_text("\nhf_on_line_two\n")
    with pytest.raises(ConfigError, match=r"api.token_file: .* is empty"):
        _token(tmp_path, {}, f"api: {{token_file: {tmp_path / 'tf'}}}\n")


def test_tilde_and_variables_are_expanded_like_huggingface_hub(tmp_path):
    env = {"HOME": str(tmp_path), "HF_HOME": "~/hf", "HF_TOKEN_PATH": ""}
    assert hf_token_path(env) == tmp_path / "hf" / "token"


def test_check_config_says_where_the_token_came_from(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    (tmp_path / "token").write_text("hf_check_config_secret\n")
    assert main(["check-config", "-c", str(_cfg(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert f"token from the hf auth login cache ({tmp_path}/token)" in out
    assert "hf_check_config_secret" not in out
