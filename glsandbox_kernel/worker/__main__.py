"""Entry point of the worker process (sandbox side).

``python -m glsandbox_kernel.worker --fd N`` serves frames on an inherited
socket; ``--connect PATH`` connects to a Unix socket first (container
backend). Called by backends that do not fork from the zygote.
"""

from __future__ import annotations

import argparse
import socket
import time

from .loop import serve


def main() -> None:
    """Parse the two transport options and serve until the host says shutdown."""
    parser = argparse.ArgumentParser(prog="glsandbox_kernel.worker")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--fd", type=int, help="inherited connected socket fd")
    group.add_argument("--connect", help="Unix socket path to connect to")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + args.connect_timeout
        while True:
            try:
                sock.connect(args.connect)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
    serve(sock)


if __name__ == "__main__":
    main()
