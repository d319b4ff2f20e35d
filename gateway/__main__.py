"""`python -m gateway [run|render|openapi|token USER]`: the REST gateway's front door."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from contracts import descriptors
from gateway import auth, openapi, render
from gateway.envoy import Envoy
from gateway.settings import Settings
from services.runtime.topology import ROOT

CONFIG = ROOT / "build" / "gateway" / "envoy.json"
OPENAPI = ROOT / "build" / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="render the config and run Envoy (the default)")
    for name, default in (("render", CONFIG), ("openapi", OPENAPI)):
        command = commands.add_parser(name, help=f"write the {name} output")
        command.add_argument("--output", type=Path, default=default)
    token = commands.add_parser("token", help="mint a development token")
    token.add_argument("user", help="the user id the token speaks for (its `sub`)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    args = parser.parse_args(argv)

    settings = Settings.from_env(os.environ)
    if args.command == "token":
        print(auth.mint_token(settings, args.user, args.ttl))
        return 0
    shop = descriptors.load(settings.descriptor_set)
    if args.command == "openapi":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(openapi.document(shop), indent=2) + "\n")
        print(args.output)
        return 0
    auth.ensure_dev_key(settings)
    if args.command == "render":
        print(render.write(settings, shop, args.output))
        return 0
    return run(settings, render.write(settings, shop, CONFIG))


def run(settings: Settings, config: Path) -> int:
    """Own Envoy until it exits or this process is asked to stop."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    with Envoy(settings, config) as envoy:
        print(f"gateway listening on http://{envoy.address} (admin {envoy.admin})", flush=True)
        try:
            return envoy.wait()
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
