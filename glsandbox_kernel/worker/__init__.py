"""The sandbox side: everything in this subpackage runs INSIDE the sandbox.

It is started by a backend (``python -m glsandbox_kernel.worker``) or forked
from the zygote, reads request frames from the host, runs function calls and
notebook cells, and writes frames back. Nothing here is trusted by the host:
what it sends is validated, size-capped and decoded with the restricted codec.
"""
