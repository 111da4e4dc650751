"""Token masking in logs: exact (whole-token occurrences only), and never altering other text."""

from __future__ import annotations

import io
import json
import re

import pytest
import structlog
from hypothesis import example, given
from hypothesis import strategies as st

from controller.logs import configure_logging, mask_secret

_TOKEN_CHAR = re.compile(r"[\w-]")


@pytest.fixture(autouse=True)
def _structlog_restored():
    """These tests configure structlog process-wide; later tests capture logs at every level."""
    yield
    structlog.reset_defaults()


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def _log_lines(secret: str, **kw: object) -> list[dict[str, object]]:
    out = _Pipe()
    configure_logging(fmt="json", level="info", secret=secret, stream=out)
    structlog.get_logger("t").info("discovery_failed", **kw)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _whole(text: str, secret: str) -> bool:
    """Whether `secret` occurs in `text` with no token character joined to it on either side."""
    start = text.find(secret)
    while start != -1:
        end = start + len(secret)
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        if not (before and _TOKEN_CHAR.match(before)) and not (after and _TOKEN_CHAR.match(after)):
            return True
        start = text.find(secret, start + 1)
    return False


def test_the_readme_token_T_leaves_timestamps_and_words_alone():
    (line,) = _log_lines(
        "T", error="HTTP 403: Bearer T refused", url="http://x/v2?token=T&a=1", who="TEAM T"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", str(line["timestamp"]))
    assert line["error"] == "HTTP 403: Bearer *** refused"
    assert line["url"] == "http://x/v2?token=***&a=1"
    assert line["who"] == "TEAM ***"
    assert line["event"] == "discovery_failed"


def test_a_real_token_is_masked_in_nested_values_and_objects():
    tok = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"
    (line,) = _log_lines(
        tok, detail={"auth": f"Bearer {tok}", "n": 3}, items=[tok, "other"], exc=ValueError(tok)
    )
    assert tok not in json.dumps(line)
    assert line["detail"] == {"auth": "Bearer ***", "n": 3}
    assert line["items"] == ["***", "other"]


def test_a_token_in_a_traceback_is_masked():
    tok = "hf_secret_in_traceback_0123456789"
    out = _Pipe()
    configure_logging(fmt="json", secret=tok, stream=out)
    try:
        raise RuntimeError(f"call failed with {tok}")
    except RuntimeError:
        structlog.get_logger("t").exception("tick_failed")
    assert tok not in out.getvalue()
    assert "call failed with ***" in out.getvalue()


def test_no_secret_masks_nothing():
    (line,) = _log_lines("", error="T T T")
    assert line["error"] == "T T T"


_secrets = st.text(min_size=1, max_size=6).filter(lambda s: s.strip() == s)
_texts = st.text(max_size=60)


@given(_texts, _secrets)
@example("2026-12-02T04:57:48Z", "T")
@example("chat-llm/T-shirt", "T")
def test_masking_never_changes_text_without_a_whole_token(text, secret):
    if not _whole(text, secret):
        assert mask_secret(text, secret) == text


@given(_texts, _secrets)
@example("Bearer T", "T")
@example(".a.a", ".a")
@example("** *", "*")
@example("x *[masked] y", "*[masked]")
def test_masking_always_removes_every_whole_token(text, secret):
    assert not _whole(mask_secret(text, secret), secret)


@given(st.lists(st.text(max_size=12), max_size=5), _secrets.filter(lambda s: " " not in s))
def test_masking_changes_only_the_token(words, secret):
    """Words that do not carry the token, joined by spaces with the token between them, come out
    as the same words with `***` (or `[masked]`) where the token stood."""
    words = [w for w in words if secret not in w and " " not in w]
    mask = "***" if "*" not in secret else "[masked]"
    text = f" {secret} ".join(words) if words else secret
    expected = f" {mask} ".join(words) if words else mask
    assert mask_secret(text, secret) == expected


def test_log_level_warn_is_accepted_as_warning(tmp_path):
    from controller.settings import load_settings

    p = tmp_path / "g.yaml"
    p.write_text("log: {level: warn}\n")
    s = load_settings(p, env={})
    out = _Pipe()
    configure_logging(fmt="json", level=s.log.level, stream=out)
    structlog.get_logger("t").info("hidden")
    structlog.get_logger("t").warning("shown")
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["shown"]
