"""Command line: ``python -m airflow_provider_stableaudio.emulator`` (``stableaudio-emulator``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from .cli_options import (
    add_fault_arguments,
    add_rate_limit_arguments,
    add_variant_arguments,
    faults_from_cli,
    rate_limit_from_cli,
    variants_from_cli,
)
from .server import EmulatorConfig, build_app, make_runner


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stableaudio-emulator",
        description="Local emulator of Stable Audio's APIs (AI/ML API and Stability AI).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--generation-seconds", type=float, default=3.0, help="time until completion (default: %(default)s)"
    )
    parser.add_argument(
        "--generation-seconds-max",
        type=float,
        default=None,
        metavar="S",
        help="each generation takes its own time, drawn uniformly from --generation-seconds to this, "
        "the same on every run (default: all take --generation-seconds)",
    )
    parser.add_argument(
        "--api-key", action="append", default=[], help="accepted Bearer key (repeatable; none: any key)"
    )
    parser.add_argument(
        "--public-base-url", default=None, help="base of audio URLs (default: from the Host header)"
    )
    parser.add_argument("--port-file", default=None, help="write the bound port to this file")
    parser.add_argument("--backlog", type=int, default=4096, help="listen backlog (default: %(default)s)")
    add_fault_arguments(parser)
    add_variant_arguments(parser)
    add_rate_limit_arguments(parser)
    args = parser.parse_args(argv)
    if args.generation_seconds < 0:
        parser.error("--generation-seconds must be >= 0")
    if args.generation_seconds_max is not None and not args.generation_seconds_max >= args.generation_seconds:
        parser.error("--generation-seconds-max must be >= --generation-seconds")
    try:
        args.faults = faults_from_cli(args)
        args.variants = variants_from_cli(args)
        args.rate_limit = rate_limit_from_cli(args)
    except ValueError as exc:
        name, _, problem = str(exc).partition(": ")
        parser.error(f"--{name.replace('_', '-')}: {problem}")
    return args


def _write_port_file(path: str, port: int) -> None:
    # Write then rename, so a reader never sees a partial number.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{port}\n")
    os.replace(tmp, path)


async def _serve(args: argparse.Namespace) -> int:
    config = EmulatorConfig(
        generation_seconds=args.generation_seconds,
        generation_seconds_max=args.generation_seconds_max,
        api_keys=frozenset(args.api_key),
        public_base_url=args.public_base_url,
        faults=args.faults,
        variants=args.variants,
        rate_limit=args.rate_limit,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = make_runner(build_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port, reuse_address=True, backlog=args.backlog)
        await site.start()
        port = int(runner.addresses[0][1])
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"Stable Audio emulator listening on http://{host}:{port}", flush=True)
        if args.port_file:
            _write_port_file(args.port_file, port)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT; return the exit code."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:
        print(f"stableaudio-emulator: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
