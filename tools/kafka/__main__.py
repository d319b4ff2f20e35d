"""`python -m tools.kafka fetch` fetches the jars; `python -m tools.kafka run` runs a broker."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tools.kafka import KafkaBroker, KafkaError, fetch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["fetch", "run"])
    parser.add_argument("--port", type=int, default=9092, help="the broker's port (run)")
    args = parser.parse_args()
    try:
        if args.command == "fetch":
            print(f"Kafka jars in {fetch()}")
            return 0
        with (
            tempfile.TemporaryDirectory(prefix="kafka-") as tmp,
            KafkaBroker(Path(tmp), args.port) as broker,
        ):
            print(f"Kafka is up: EVENTS_BROKER={broker.url} (Ctrl-C stops it)", flush=True)
            while True:
                time.sleep(3600)
    except KafkaError as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
