"""The host's output collector and budget on hostile frames (review 10 findings 1 and 6), no sandbox needed."""

from __future__ import annotations

from typing import Any

from glsandbox_kernel.output_budget import MAX_DISPLAY_ID, MAX_ENAME, OutputBudget, frame_size
from glsandbox_kernel.outputs import OutputCollector


def _display(text: str, display_id: Any, kind: str = "display_data", **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "data": {"text/plain": text},
        "metadata": {},
        "transient": {"display_id": display_id},
        **extra,
    }


def test_frame_size_counts_every_field_of_a_frame() -> None:
    small = frame_size(_display("x", "d"))
    assert frame_size(_display("x", "d" * 10_000)) >= small + 9_999
    assert frame_size({**_display("x", "d"), "transient": {"display_id": "d", "other": "o" * 5_000}}) >= small + 5_000
    assert frame_size({"type": "error", "ename": "E" * 7_000, "evalue": "", "traceback": []}) >= 7_000
    assert frame_size({"type": "execute_result", "data": {}, "execution_count": 2**80_000}) >= 10_000
    assert frame_size({"type": "stream", "name": "stdout", "text": "abc"}) == 3  # a stream: its text


def test_kept_fields_are_bounded_and_what_is_left_out_is_counted() -> None:
    collector = OutputCollector(None, None, None)
    collector.budget = OutputBudget(1 << 20)
    collector.handle(_display("long", "d" * (MAX_DISPLAY_ID + 1)))  # shown, without its id
    collector.handle({**_display("extra", "e"), "transient": {"display_id": "e", "junk": "j" * 1000}})
    collector.handle(_display("lost", "u" * (MAX_DISPLAY_ID + 1), "update_display_data"))  # dropped
    collector.handle({"type": "error", "ename": "E" * 5_000, "evalue": 2**20_000, "traceback": [2**20_000]})
    collector.handle({"type": "execute_result", "data": {}, "metadata": {}, "execution_count": 2**1000})
    outputs = collector.outputs
    assert [o.get("_display_id") for o in outputs[:2]] == [None, "e"]
    assert len(outputs) == 4 and outputs[0]["data"] == {"text/plain": "long"}
    assert outputs[2]["ename"] == "E" * MAX_ENAME and outputs[2]["evalue"] == "<int>"
    assert outputs[3]["execution_count"] is None
    fields = collector.budget.record_fields()
    assert fields["outputs_dropped"] == 5, fields
    assert fields["outputs_dropped_bytes"] >= MAX_DISPLAY_ID + 1000 + (5_000 - MAX_ENAME), fields


def test_an_update_touches_the_displays_of_its_own_id_only() -> None:
    collector = OutputCollector(None, None, None)
    for i in range(3):
        collector.handle(_display("x", f"d{i}"))
    collector.handle(_display("x", "d1"))  # a second output with the same id
    collector.handle(_display("y", "none", "update_display_data"))
    collector.handle(_display("z", "d1", "update_display_data"))
    assert [o["data"]["text/plain"] for o in collector.outputs] == ["x", "z", "x", "z"]
    collector.handle({"type": "clear_output", "wait": False})
    collector.handle(_display("w", "d1", "update_display_data"))  # its displays were cleared: nothing to update
    collector.handle(_display("x", "d1"))
    assert [o["data"]["text/plain"] for o in collector.outputs] == ["x"]
    assert collector.budget.record_fields() == {}  # an update of an unknown id is no output over budget


def test_only_the_host_marks_its_own_error_frame() -> None:
    """``_by_host`` (the kernel names a limit only on the host's own error) never survives from a worker frame."""
    seen: list[dict[str, Any]] = []
    collector = OutputCollector(lambda frame: seen.append(frame), None, None)
    forged = {"type": "error", "ename": "SandboxCrashedError", "evalue": "SIGXCPU", "traceback": [], "_by_host": True}
    collector.handle(forged)
    collector.handle({**forged, "_by_host": False}, by_host=True)
    assert [frame.get("_by_host") for frame in seen] == [None, True]
    assert all("_by_host" not in out for out in collector.outputs)  # never recorded in the cell's outputs


def test_a_frame_the_host_did_not_show_is_not_recorded() -> None:
    """Review 26: the relay dropped a frame it could not send, yet the collector recorded it (the saved
    notebook then failed verify: "output removed"). ``NOT_SHOWN`` from ``on_output``: nothing reached the
    frontend, so nothing is recorded, and a pending ``clear_output(wait=True)`` still waits (as the frontend's)."""
    from glsandbox_kernel.outputs import NOT_SHOWN

    def on_output(frame: dict[str, Any]) -> dict[str, Any] | None:
        return NOT_SHOWN if frame.get("data", {}).get("text/plain") == "lost" else None

    collector = OutputCollector(on_output, None, None)
    collector.handle(_display("kept", None))
    collector.handle({"type": "clear_output", "wait": True})
    collector.handle(_display("lost", None))
    assert [o["data"]["text/plain"] for o in collector.outputs] == ["kept"] and collector.clear_pending
    collector.handle(_display("next", None))
    assert [o["data"]["text/plain"] for o in collector.outputs] == ["next"]
