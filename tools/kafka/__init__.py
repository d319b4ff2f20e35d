"""A single-node Apache Kafka broker in KRaft mode, from the Apache jars on Maven Central, for the
events system test and local runs of the Kafka transport: `python -m tools.kafka run`.

The jars are fetched once into build/kafka/libs with Maven (`python -m tools.kafka fetch`); the
broker needs Java 17 or newer.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from mesh.local.stack import free_port
from runner.child import Child
from services.runtime.topology import ROOT

POM = Path(__file__).resolve().parent / "pom.xml"
LIBS = ROOT / "build" / "kafka" / "libs"
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
READY_LINE = "Kafka Server started"
# Kafka logs through slf4j to reload4j; INFO to the console is what tells us it is ready.
LOG_CONFIG = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


class KafkaError(RuntimeError):
    """The broker could not be fetched or started; the message says why."""


def fetch(timeout: float = 600) -> Path:
    """Copy the broker's jars into build/kafka/libs (once) and return that folder."""
    if any(LIBS.glob("kafka_2.13-*.jar")):
        return LIBS
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise KafkaError(f"`{tool}` is not on PATH: the Kafka broker needs Maven and Java 17")
    run = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={LIBS}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if run.returncode != 0:
        raise KafkaError(f"fetching the Kafka jars failed:\n{run.stdout}\n{run.stderr}")
    return LIBS


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaBroker:
    """One broker and controller in one JVM, on free loopback ports, under `workdir`."""

    def __init__(self, workdir: Path, port: int = 0) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.controller_port = free_port()
        self.log_path = workdir / "kafka.log"
        self._server: Child | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The `EVENTS_BROKER` value that points the services at this broker."""
        return f"kafka://{self.bootstrap}"

    def _properties(self) -> Path:
        path = self.workdir / "server.properties"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        return path

    def _java(self, *args: str) -> list[str]:
        logging = self.workdir / "log4j.properties"
        logging.write_text(LOG_CONFIG)
        return [
            "java",
            "-Xmx512m",
            f"-Dlog4j.configuration=file:{logging}",
            "-cp",
            f"{fetch()}/*",
            *args,
        ]

    def start(self) -> KafkaBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._properties()
        formatted = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if formatted.returncode != 0:
            raise KafkaError(f"formatting the Kafka log dir failed:\n{formatted.stderr}")
        self._server = Child(
            self._java("kafka.Kafka", str(config)),
            self.log_path,
            env={**os.environ, "KAFKA_HEAP_OPTS": "-Xmx512m"},
        )
        self._server.start()
        self._wait_ready(self._server)
        return self

    def _wait_ready(self, server: Child) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not server.running:
                raise KafkaError(f"Kafka exited with {server.returncode}:\n{server.log_tail(30)}")
            if READY_LINE in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        tail = server.log_tail(30)
        self.stop()
        raise KafkaError(f"Kafka was not ready within {READY_TIMEOUT}s:\n{tail}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=30)
            self._server = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
