"""Log output: text and JSON lines, with keys and passwords redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from pmoracle.node.logs import REDACTED, configure_logging, redact, register_secret

KEY = bytes.fromhex("5f2b9c6d1e0a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c")
BLOCK_HASH = "0x" + "ab12" * 16


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = configure_logging("json", "DEBUG", buffer)
    yield buffer
    logging.getLogger().removeHandler(handler)


def test_json_lines_carry_fields_and_no_secret(stream: io.StringIO) -> None:
    register_secret(KEY)
    log = logging.getLogger("pmoracle.test")
    log.info("unlocked 0x%s for block %s", KEY.hex().upper(), BLOCK_HASH, extra={"round": 7, "digest": b"\x01\x02"})
    log.warning("connect password=hunter22 ok", extra={"private_key": "anything", "peers": 3})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "pmoracle.test" and first["ts"].endswith("Z")
    assert first["msg"] == f"unlocked {REDACTED} for block {BLOCK_HASH}"  # hashes stay readable
    assert first["round"] == 7 and first["digest"] == "0x0102"
    assert second["msg"] == f"connect password={REDACTED} ok"
    assert second["private_key"] == REDACTED and second["peers"] == 3
    assert KEY.hex() not in stream.getvalue().lower() and "hunter22" not in stream.getvalue()


def test_text_format_and_tracebacks_are_redacted() -> None:
    buffer = io.StringIO()
    handler = configure_logging("text", "INFO", buffer)
    register_secret("pass-phrase-42")
    try:
        try:
            raise ValueError("bad key " + KEY.hex())
        except ValueError:
            logging.getLogger("pmoracle.t").exception("failed with pass-phrase-42", extra={"round": 1})
        logging.getLogger("pmoracle.t").debug("below the level")
    finally:
        logging.getLogger().removeHandler(handler)
    text = buffer.getvalue()
    assert "ERROR" in text and "pmoracle.t: failed with [REDACTED] round=1" in text
    assert "ValueError: bad key [REDACTED]" in text
    assert KEY.hex() not in text and "pass-phrase-42" not in text and "below the level" not in text


def test_redact_pairs_and_unknown_format() -> None:
    assert redact('{"password": "x y", "secret_key":abc}') == '{"password": "[REDACTED]", "secret_key":[REDACTED]}'
    assert redact("root 0x" + "cd" * 32) == "root 0x" + "cd" * 32
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("xml")
