"""The command line: ``python -m coflow demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._demo import BACKENDS, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coflow",
        description="coflow: lightweight flows (debounce, retries, sagas, parallel work) for Python.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the examples and print their notify events as they happen",
        description=(
            "Run the examples (debounced sync with retries, parallel import, order saga) "
            "and print each notify event with its time in seconds, its flow and the event."
        ),
    )
    demo.add_argument(
        "--virtual",
        action="store_true",
        help="run on the virtual clock: no real time passes, the times printed are virtual",
    )
    demo.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        metavar="NAME",
        help=f"the backend to run on in real time (one of: {', '.join(BACKENDS)}; default: {BACKENDS[0]})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.virtual and args.backend not in (None, "virtual"):
        parser.error("--virtual runs on the virtual backend; it cannot be combined with --backend " + args.backend)
    return run_demo(backend_name=args.backend, virtual=args.virtual)


if __name__ == "__main__":
    sys.exit(main())
