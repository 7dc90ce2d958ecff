"""verify names a kernelspec whose level (``glsandbox-<level>``) differs from the records' (review 13, finding 1)."""

from __future__ import annotations

from glsandbox_kernel.notebook.checks import kernelspec_level_warning


def _nb(name: str) -> dict:
    return {"metadata": {"kernelspec": {"name": name, "display_name": "x", "language": "python"}}, "cells": []}


def test_a_strict_kernelspec_over_lenient_records_is_named() -> None:
    found = kernelspec_level_warning(_nb("glsandbox-strict"), {"lenient"})
    assert found is not None and "glsandbox-strict" in found and "lenient" in found
    assert kernelspec_level_warning(_nb("glsandbox-strict-container"), {"moderate", "strict"}) is not None


def test_a_matching_or_level_free_kernelspec_is_not() -> None:
    assert kernelspec_level_warning(_nb("glsandbox-strict"), {"strict"}) is None
    assert kernelspec_level_warning(_nb("glsandbox-lenient-container"), {"lenient"}) is None
    assert kernelspec_level_warning(_nb("glsandbox"), {"lenient"}) is None  # the config file gives the level
    assert kernelspec_level_warning(_nb("glsandbox-container"), {"strict"}) is None
    assert kernelspec_level_warning(_nb("python3"), {"strict"}) is None
