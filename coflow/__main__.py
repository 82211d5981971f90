"""The command line: ``python -m coflow demo``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._backend import backend_names
from ._demo import DEFAULT_BACKEND, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coflow",
        description="coflow: small long-lived flows (debounce, retries, sagas) for Python.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the examples and print their notify events as they happen",
        description=(
            "Run the examples (debounced sync with retries, parallel import, order saga, "
            "order pipeline with child flows, supervised flaky exports) "
            "on a backend and print each notify event with its time in seconds, its flow "
            "and the event."
        ),
    )
    demo.add_argument(
        "--virtual",
        action="store_true",
        help="the same as --backend virtual: run on the virtual clock, no real time passes",
    )
    names = backend_names()
    demo.add_argument(
        "--backend",
        choices=names,
        default=None,
        metavar="NAME",
        help=f"the backend to run on (one of: {', '.join(names)}; default: {DEFAULT_BACKEND})",
    )
    demo.add_argument(
        "--web",
        action="store_true",
        help="serve the inspector page on 127.0.0.1 while the demo runs, over and over",
    )
    demo.add_argument(
        "--port", type=int, default=8000, help="the inspector's port, with --web (default: 8000)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.virtual and args.backend not in (None, "virtual"):
        parser.error(f"--virtual runs on the virtual clock; it excludes --backend {args.backend}")
    if args.web and (args.virtual or args.backend == "virtual"):
        parser.error("--web shows flows as they run in real time; it excludes the virtual clock")
    try:
        if args.web:
            from ._demo_web import serve_demo_web

            status = serve_demo_web(port=args.port, backend_name=args.backend)
        else:
            status = run_demo(backend_name=args.backend, virtual=args.virtual)
    except ImportError as missing:
        if args.backend != "gevent":
            raise
        parser.exit(2, f"{parser.prog} demo: {missing}\n")  # says what to install
    if status:
        # The output was closed early (`demo | head`): keep the interpreter's final flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status


if __name__ == "__main__":
    sys.exit(main())
