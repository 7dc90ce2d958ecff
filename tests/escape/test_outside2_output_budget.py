"""Outside review (3rd): the per-cell output budget does not count values nested deeper than 8 levels.

Attack (bypass of the output-flood fix): the sandboxed cell displays a JSON
bundle whose 8 MiB string sits ten lists deep, forty times.
``output_budget._value_size`` stops at depth 8 and counts whatever is below
as 256 bytes, so every frame passes as tiny: nothing is cut, no notice, the
record's counts say nothing was dropped, and the host keeps all of it.
Measured at STRICT (256 MiB sandbox, a 32 MiB output budget): the host
process grew by ~340 MiB in one cell; the count of such frames has no bound
(each may be as large as the frame cap), so a sandbox with a small memory
limit exhausts the host's.

Judged from the host: one cell's outputs grow the host process by at most a
few times the cell's output budget.

Fix (suggested): ``output_budget.py`` (``_value_size``): count the whole
value (iteratively, no depth cut-off), or charge the encoded frame size the
channel already knows.
"""

from __future__ import annotations

from glsandbox_kernel import OSSandbox, create_config_by_level
from glsandbox_kernel.output_budget import OutputBudget

CODE = (
    "from IPython.display import display\n"
    "bundle = {'text/plain': 'ok', 'application/json': {'a': [[[[[[[[[['x' * (8 << 20)]]]]]]]]]]}}\n"
    "for _ in range(40):\n"
    "    display(bundle, raw=True)\n"
)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_deeply_nested_outputs_are_counted_by_the_output_budget() -> None:
    cfg = create_config_by_level("strict")
    budget = OutputBudget.for_memory_limit(cfg.limits.memory_limit_bytes).limit
    with OSSandbox(cfg) as sb:
        sb.run_cell("1")
        before = _rss()
        result = sb.run_cell(CODE)
        grown = _rss() - before
        kept = len(result.outputs)
    assert grown < 4 * budget, (
        f"one cell grew the host by {grown >> 20} MiB with a {budget >> 20} MiB output budget "
        f"({kept} outputs kept, status {result.status})"
    )
