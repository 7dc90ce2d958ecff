"""Sandboxed stream text on the host's terminal (review 10, finding 4) and ``--out`` key names (finding 7).

terminal_text.stream_text (what relay_streams and the magic write), outputs.relay_streams
on the real sys.stdout/sys.stderr, magics.transfer.accept_out on hostile replies. Pure
host-side functions on real inputs.
"""

from __future__ import annotations

import re

import pytest

from glsandbox_kernel.exceptions import SandboxSecurityError
from glsandbox_kernel.magics.transfer import accept_out, key_name
from glsandbox_kernel.outputs import relay_streams
from glsandbox_kernel.terminal_text import stream_text

HOSTILE = (
    "A\x1b]52;c;cHduZWQ=\x07B\x1b[2J\x1bP1$q\x1b\\\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\"
    "\x9d0;title\x9c\x9b2J\x1b[1;31mred\x1b[0m\x08\x0c\x7f\u202eok\ud800\r\n\tdone"
)
SGR = re.compile(r"\x1b\[[0-9;:]*m")


def raw_controls(out: str) -> list[str]:
    """Control characters a terminal would act on, SGR sequences (allowed) taken out first."""
    rest = SGR.sub("", out)
    return [c for c in rest if (ord(c) < 0x20 and c not in "\n\t\r") or 0x7F <= ord(c) <= 0x9F or c == "\u202e"]


def test_stream_text_keeps_newlines_tabs_returns_and_colours_only() -> None:
    out = stream_text(HOSTILE)
    assert raw_controls(out) == [], repr(out)
    assert "\x1b[1;31mred\x1b[0m" in out and out.endswith("\r\n\tdone")
    assert "\\x1b]52;c;cHduZWQ=\\x07" in out and "\\x1b[2J" in out and "\\x9b2J" in out
    out.encode("utf-8")  # the lone surrogate is escaped too
    assert stream_text("plain\ttext\n") == "plain\ttext\n"


@pytest.mark.parametrize("text", [HOSTILE, "x\x1b[31mred\x1b]0;t\x07\x1b[0m\x1b[", "\x1b[1;2;3;4m\x1b]8;;u\x1b\\"])
def test_a_sequence_split_over_two_chunks_does_not_slip_through(text: str) -> None:
    for cut in range(len(text) + 1):
        out = stream_text(text[:cut]) + stream_text(text[cut:])
        assert raw_controls(out) == [], (cut, repr(out))


def test_long_unfinished_sequences_are_escaped_whole() -> None:
    text = "\x1b[" + "1;" * 100_000 + "\x1b]" + "x" * 100_000
    out = stream_text(text)
    assert "\x1b" not in out and out.count("\\x1b") == 2 and len(out) == len(text) + 6


def test_relay_streams_writes_filtered_text(capsys: pytest.CaptureFixture[str]) -> None:
    relay_streams({"type": "stream", "name": "stdout", "text": "A\x1b]52;c;cHduZWQ=\x07B\n"})
    relay_streams({"type": "stream", "name": "stderr", "text": "E\x1b]0;pwned\x07\x1b[32mok\x1b[0m\n"})
    out, err = capsys.readouterr()
    assert out == "A\\x1b]52;c;cHduZWQ=\\x07B\n"
    assert err == "E\\x1b]0;pwned\\x07\x1b[32mok\x1b[0m\n"


def test_out_reply_with_a_huge_int_key_is_refused_as_tampering() -> None:
    with pytest.raises(SandboxSecurityError, match=r"tampered.*<int of 20001 bits>"):
        accept_out(["x"], {2**20000: 1, "x": 1})
    with pytest.raises(SandboxSecurityError, match="tampered") as info:
        accept_out(["x"], {"x": 1, "y\x1b]52;c;cHduZWQ=\x07" + "z" * 500: 2, (1, 2): 3, 7: 4})
    text = str(info.value)
    assert "\x1b" not in text and "<tuple>" in text and "7" in text and len(text) < 400
    assert accept_out(["x"], {"x": 1}) == {"x": 1}


def test_key_names_are_bounded_and_never_raise() -> None:
    assert key_name(2**20000) == "<int of 20001 bits>"
    assert key_name(-5) == "-5" and key_name(True) == "<bool>"
    assert len(key_name("k" * 10_000)) <= 84 and key_name("\x1b[2J") == "'\\x1b[2J'"
    assert key_name(frozenset({1})) == "<frozenset>"
