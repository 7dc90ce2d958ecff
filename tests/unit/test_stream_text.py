"""``process_stream_text`` (host side: every verify and every record's output hash) is linear and keeps
the exact result of the rule the records were hashed with (review 25b F8: the old one was quadratic)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from glsandbox_kernel.notebook.evidence import process_stream_text


def _reference(text: str) -> str:
    """The rule as first written (one character at a time, quadratic on long lines): the oracle."""
    out: list[str] = []
    pos = 0
    for ch in text:
        if ch == "\n":
            out.append("\n")
            pos = len(out)
        elif ch == "\r":
            while pos > 0 and out[pos - 1] != "\n":
                pos -= 1
        elif ch == "\b":
            if pos > 0 and out[pos - 1] != "\n":
                del out[pos - 1 : pos + 1]
                pos -= 1
        else:
            if pos < len(out) and out[pos] != "\n":
                out[pos] = ch
            else:
                out.insert(pos, ch)
            pos += 1
    return "".join(out)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "é", "\U0001f600", "\r", "\b", "\n", "xyz", "\r\n"]), max_size=60))
def test_same_result_as_the_rule_records_were_hashed_with(parts: list[str]) -> None:
    text = "".join(parts)
    assert process_stream_text(text) == _reference(text)


def test_idempotent_on_processed_text() -> None:
    for text in ["abc\rx\bd\n", "progress 10%\rprogress 99%\rdone\n", "a\b\b\bb\r\r\nc"]:
        once = process_stream_text(text)
        assert process_stream_text(once) == once == _reference(text)


def test_long_line_overwritten_with_backspaces() -> None:
    # The attack's shape, small enough for the reference to check it.
    n = 2000
    text = "A" * n + "\r" + "x\b" * (n // 2)
    assert process_stream_text(text) == _reference(text)
