"""Stream text as a terminal shows it, JupyterLab's rule (host side).

Who calls: :mod:`.evidence` (every cell's stream outputs are hashed in this
form, live and from a saved notebook) and the verifier through it. Sandbox
text is hostile, so the rule is linear in the text's length.
"""

from __future__ import annotations

import re

_CONTROL_RE = re.compile("([\r\b\n])")


def process_stream_text(text: str) -> str:
    """``text`` as a terminal shows it: ``\\r`` returns to the line start, ``\\b`` deletes.

    The same rules as JupyterLab's output model (``processText``), which
    stores the processed text in the notebook it saves; applying them to raw
    text and to already processed text gives the same result.
    """
    if "\r" not in text and "\b" not in text:
        return text
    # Linear: the current line is a gap buffer, ``left`` before the cursor and ``right`` from it on,
    # reversed (``right[-1]`` is under the cursor); a newline always ends the text, whatever the cursor.
    out: list[str] = []
    left: list[str] = []
    right: list[str] = []
    for part in _CONTROL_RE.split(text):
        if part == "\n":
            out.extend(left)
            out.extend(reversed(right))
            out.append("\n")
            left.clear()
            right.clear()
        elif part == "\r":
            right.extend(reversed(left))
            left.clear()
        elif part == "\b":
            if left:
                # JupyterLab drops the character before the cursor and the one under it.
                left.pop()
                if right:
                    right.pop()
        elif part:
            if right:
                del right[-len(part) :]
            left.extend(part)
    out.extend(left)
    out.extend(reversed(right))
    return "".join(out)
