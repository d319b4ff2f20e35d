"""The local mesh: every workload of mesh/base as a process with its own Envoy sidecar.

`LocalMesh` issues identities from the local CA, renders and starts one sidecar per workload,
starts the apps behind them, and switches scenarios on the running sidecars (`apply`). Its state
file lets `mesh-apply` and `mesh-status` in another terminal find the running sidecars.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from mesh.check import Mesh, Settings, load_checked
from mesh.check.model import display
from mesh.local.authorization import INBOUND_ROUTES
from mesh.local.ca import Identity, LocalCA
from mesh.local.envoys import Sidecar
from mesh.local.sidecar import Rendered, bootstrap, render
from mesh.local.stack import GATEWAY_MODULE, HOST, LocalStack, StackError, free_port
from mesh.local.telemetry import trace_policy
from mesh.local.workloads import Ports, workloads
from runner.envoy import envoy_binary
from services.runtime.topology import ROOT, Workload, standalone

STATE_FILE = "mesh/state.json"
# Where `make` builds the programs of workloads that are not Python (the Go catalog).
LOCAL_BIN = ROOT / "build" / "bin"
# Settings the local stack sets itself, whatever the Deployment says.
_LOCAL_SETTINGS = frozenset(
    {"HOST", "PORT", "METRICS_PORT", "DATABASE_PATH", "GATEWAY_HOST", "GATEWAY_PORT", "ADMIN_PORT"}
)


def local_command(workload: Workload) -> list[str]:
    """How this machine runs a workload that is not Python: its program from build/bin, as the
    container image would carry it on PATH."""
    program = LOCAL_BIN / Path(workload.command[0]).name
    if not program.is_file():
        raise StackError(
            f"{workload.name} runs {workload.command[0]!r}, and {program} is missing:"
            f" build it with `make {program.name}`"
        )
    return [str(program), *workload.command[1:]]


class ApplyError(RuntimeError):
    """A sidecar did not take the new configuration; the message lists each problem."""


@dataclass(frozen=True)
class Running:
    """What another process needs to reconfigure the running mesh (the state file)."""

    workdir: Path
    plan: Mapping[str, Ports]
    admins: Mapping[str, str]
    scenario: str | None
    version: str
    pid: int  # the supervisor's: the state is stale once it is gone
    metrics: Mapping[str, int] = field(default_factory=dict)  # app /metrics ports
    otlp_endpoint: str = ""

    def save(self) -> None:
        path = self.workdir / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "pid": self.pid,
            "scenario": self.scenario,
            "version": self.version,
            "otlp_endpoint": self.otlp_endpoint,
            "workloads": {
                name: {
                    "admin": self.admins.get(name, ""),
                    "app": ports.app,
                    "inbound": ports.inbound,
                    "outbound": dict(ports.outbound),
                    "metrics": self.metrics.get(name, 0),
                }
                for name, ports in self.plan.items()
            },
        }
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps(document, indent=2))
        os.replace(staged, path)

    @classmethod
    def read(cls, workdir: Path) -> Running:
        path = workdir / STATE_FILE
        if not path.exists():
            raise ApplyError(f"the local mesh is not running from {workdir} (no {path}): `make up`")
        document: dict[str, Any] = json.loads(path.read_text())
        pid = int(document.get("pid", 0))
        if not _alive(pid):
            raise ApplyError(f"the local mesh that wrote {path} is gone: `make up`")
        plan = {
            name: Ports(w["app"], w["inbound"], w["outbound"])
            for name, w in document["workloads"].items()
        }
        admins = {name: w["admin"] for name, w in document["workloads"].items()}
        metrics = {name: int(w.get("metrics", 0)) for name, w in document["workloads"].items()}
        return cls(
            workdir,
            plan,
            admins,
            document.get("scenario"),
            document["version"],
            pid,
            metrics,
            str(document.get("otlp_endpoint", "")),
        )


class LocalMesh:
    """Apps and sidecars for every workload in `mesh/`, with `scenario` applied at start.

    `app_ports` pins apps to ports (for `make up`); tests leave it empty and get free ports.
    `service_env` adds settings per workload (e.g. the gateway's rate limits in tests).
    `otlp_endpoint` (an OTLP/gRPC collector) turns tracing on in every app and, as the mesh's
    Telemetry says, in the sidecars. `sidecars=False` renders none (`make up MESH=off`): each
    app's first version runs alone and its peers call each other's apps directly.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        settings: Settings | None = None,
        scenario: Path | None = None,
        app_ports: Mapping[str, int] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        envoy_bin: str | None = None,
        plan: Mapping[str, Ports] | None = None,
        otlp_endpoint: str = "",
        sidecars: bool = True,
        metrics_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.workdir = workdir
        self.otlp_endpoint = otlp_endpoint
        self.settings = settings or Settings.from_env()
        self.scenario = scenario
        self._app_ports = dict(app_ports or {})
        self._service_env = service_env or {}
        self.mesh: Mesh = load_checked(self.settings, scenario)
        found = workloads(self.mesh)
        self.workloads: dict[str, Workload] = found if sidecars else standalone(found.values())
        self.plan: dict[str, Ports] = dict(plan or {}) or {
            name: Ports(
                app=self._app_ports.get(name) or free_port(),
                inbound=free_port() if w.grpc and sidecars else 0,
                outbound={h: free_port() for h in sorted(set(w.peers.values()))}
                if sidecars
                else {},
            )
            for name, w in self.workloads.items()
        }
        # Each app's Prometheus /metrics (the gateway's: its Envoy admin, /stats/prometheus).
        self.metrics_ports: dict[str, int] = {
            name: (metrics_ports or {}).get(name) or free_port() for name in self.workloads
        }
        self._envoy_bin = (envoy_bin or envoy_binary()) if sidecars else ""
        self.sidecars = {
            name: Sidecar(name, workdir / "mesh" / name, self._envoy_bin)
            for name in (self.workloads if sidecars else ())
        }
        self.identities: dict[str, Identity] = {}
        self.ca = LocalCA(workdir / "mesh" / "ca")
        self.supervisor_pid = os.getpid()
        self.stack: LocalStack | None = None
        self.version = ""

    @classmethod
    def attach(cls, workdir: Path, settings: Settings | None = None) -> LocalMesh:
        """The mesh that `make up` runs from `workdir`, to reconfigure or inspect it."""
        running = Running.read(workdir)
        local = cls(
            workdir, settings=settings, plan=running.plan, otlp_endpoint=running.otlp_endpoint
        )
        local.metrics_ports = dict(running.metrics)
        local.scenario = Path(running.scenario) if running.scenario else None
        missing = sorted(set(local.workloads) - set(running.plan))
        if missing:
            raise ApplyError(f"workloads {missing} are not running: restart `make up` to add them")
        for name, sidecar in local.sidecars.items():
            sidecar.admin = running.admins[name]
            local.identities[name] = Identity.stored(
                local.workloads[name].account, sidecar.directory / "certs"
            )
        local.version = running.version
        local.supervisor_pid = running.pid
        return local

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalMesh:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        for workload in self.workloads.values():
            if workload.command:
                local_command(workload)  # fail before starting anything when a program is missing
        for name, sidecar in self.sidecars.items():
            workload = self.workloads[name]
            dns = (f"{workload.app}.{workload.namespace}.svc.cluster.local",)
            self.identities[name] = self.ca.issue(
                workload.account, sidecar.directory / "certs", dns_names=dns
            )
            sidecar.write_bootstrap(bootstrap(workload, sidecar.xds_dir))
        self.version = _version(self.scenario)
        for name, sidecar in self.sidecars.items():
            sidecar.write(self.render(self.mesh, name), self.version)
            sidecar.start()
        for sidecar in self.sidecars.values():
            sidecar.wait_ready()
        if self.sidecars:
            self._save()  # what mesh-apply and mesh-status read; with no sidecars, nothing to apply
        self.stack = LocalStack(
            self.workdir,
            services=list(self.workloads),
            ports={name: ports.app for name, ports in self.plan.items()},
            metrics_ports=self.metrics_ports,
            service_env={name: self._app_env(name) for name in self.workloads},
            commands={name: local_command(w) for name, w in self.workloads.items() if w.command},
        )
        self.stack.__enter__()

    def close(self) -> None:
        if self.stack is not None:
            self.stack.stop_all()
            self.stack = None
        for sidecar in self.sidecars.values():
            sidecar.stop()
        state = self.workdir / STATE_FILE
        if state.exists() and json.loads(state.read_text()).get("pid") == os.getpid():
            state.unlink()

    def _app_env(self, name: str) -> dict[str, str]:
        """What the Deployment sets, less what only makes sense in a pod, plus the mesh's own:
        peers reached through the sidecar's outbound ports; the stack adds the rest."""
        workload, ports = self.workloads[name], self.plan[name]
        env = {
            k: v
            for k, v in workload.env.items()
            if k not in _LOCAL_SETTINGS and not k.endswith("_ADDR")
        }
        for setting, host in workload.peers.items() if ports.outbound else ():
            env[setting] = f"{HOST}:{ports.outbound[host]}"
        if self.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        if workload.module == GATEWAY_MODULE:
            # The gateway starts the traces: it samples as the mesh's Telemetry says.
            env["TRACE_SAMPLING"] = str(trace_policy(self.mesh, workload).sampling)
        env.update(self._service_env.get(name, {}))
        return env

    # --- configuration ---------------------------------------------------------------------

    def render(self, mesh: Mesh, name: str) -> Rendered:
        sidecar = self.sidecars[name]
        return render(
            mesh,
            self.workloads[name],
            self.plan,
            self.identities[name],
            sidecar.xds_dir,
            self.otlp_endpoint,
        )

    def apply(self, scenario: Path | None) -> str:
        """Validate `scenario` with mesh.check, swap every sidecar's files, confirm; the version."""
        mesh = load_checked(self.settings, scenario)
        version = _version(scenario)
        rendered = {name: self.render(mesh, name) for name in self.sidecars}  # render all first
        before = {name: s.stats() for name, s in self.sidecars.items()}
        for name, sidecar in self.sidecars.items():
            sidecar.write(rendered[name], version)
        problems = [
            f"{name}: {problem}"
            for name, sidecar in self.sidecars.items()
            for problem in sidecar.confirm(version, before[name])
        ]
        if problems:
            raise ApplyError("\n".join(problems))
        self.mesh, self.scenario, self.version = mesh, scenario, version
        self._save()
        return version

    def _save(self) -> None:
        admins = {name: s.admin for name, s in self.sidecars.items()}
        scenario = display(self.scenario) if self.scenario else None
        Running(
            self.workdir,
            self.plan,
            admins,
            scenario,
            self.version,
            self.supervisor_pid,
            self.metrics_ports,
            self.otlp_endpoint,
        ).save()

    # --- inspection ------------------------------------------------------------------------

    def address(self, name: str) -> str:
        """Where `name`'s app listens (plain gRPC on loopback, like a pod's localhost)."""
        return f"{HOST}:{self.plan[name].app}"

    def inbound(self, name: str) -> str:
        return f"{HOST}:{self.plan[name].inbound}"

    def outbound(self, caller: str, host: str) -> str:
        """The port `caller`'s app reaches `host` on: its own sidecar's outbound listener."""
        return f"{HOST}:{self.plan[caller].outbound[host]}"

    def served(self, name: str, method: str = "") -> int:
        """Requests `name`'s inbound sidecar has completed (which version served a call); with
        `method` (`/package.Service/Method`), only calls of that method, by its `grpc_stats`."""
        sidecar = self.sidecars[name]
        if not method:
            return sidecar.counter("http.inbound.downstream_rq_completed")
        # cluster.inbound|<port>||.grpc.<package.Service>.<Method>.<status code>
        infix = f".grpc.{method.strip('/').replace('/', '.')}."
        stats = sidecar.stats("cluster.inbound|")
        return sum(
            int(v) for k, v in stats.items() if infix in k and k.rpartition(".")[2].isdigit()
        )

    def status(self) -> str:
        """What each running sidecar routes, as Envoy reports it (not as rendered)."""
        lines = [f"scenario: {display(self.scenario) if self.scenario else '(none)'}"]
        lines.append(f"version:  {self.version}")
        for name, sidecar in self.sidecars.items():
            lines.append(f"\n{name}  (admin http://{sidecar.admin})")
            try:
                dumps = sidecar.config_dump("dynamic_route_configs")
                served = sidecar.stats("http.inbound.downstream_rq_completed")
            except OSError as error:
                lines.append(f"  unreachable: {error}")
                continue
            for dump in sorted(dumps, key=lambda d: str(d["route_config"]["name"])):
                lines += describe_routes(dump["route_config"], self.plan[name])
            for count in served.values():
                lines.append(f"  inbound requests served: {count}")
        return "\n".join(lines)

    def check_alive(self) -> list[str]:
        """Names of workloads (app or sidecar) that exited."""
        dead = [
            f"{n} sidecar"
            for n, s in self.sidecars.items()
            if s.process is None or s.process.poll() is not None
        ]
        if self.stack is not None:
            dead += self.stack.exited()
        return dead


def _version(scenario: Path | None) -> str:
    label = scenario.stem if scenario is not None else "base"
    return f"{time.strftime('%H%M%S')}.{time.monotonic_ns() % 1_000_000:06d}-{label}"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_routes(config: Mapping[str, Any], ports: Ports) -> list[str]:
    """One line per route: where calls go (weights), and faults, retries and timeouts."""
    name = str(config["name"])
    if name == INBOUND_ROUTES:
        header = f"  inbound :{ports.inbound} (mTLS) -> app :{ports.app}"
    else:
        host = name.removeprefix("outbound_")
        header = f"  outbound {host} :{ports.outbound.get(host, '?')}"
    lines = [header]
    for vhost in config.get("virtual_hosts", []):
        for route in vhost.get("routes", []):
            lines.append(f"    {_match_text(route.get('match', {}))} -> {_action_text(route)}")
    return lines


def _match_text(match: Mapping[str, Any]) -> str:
    text = match.get("path") or (match.get("prefix", "") + "*")
    for header in match.get("headers", []):
        value = next(iter(header.get("string_match", {}).values()), "")
        text += f" [{header['name']}={value}]"
    return str(text)


def _action_text(route: Mapping[str, Any]) -> str:
    action = route.get("route", {})
    weighted = action.get("weighted_clusters", {}).get("clusters")
    if weighted:
        total = sum(int(c.get("weight", 0)) for c in weighted)
        text = ", ".join(
            f"{_subset(c['name'])} {100 * int(c['weight']) / total:g}%" for c in weighted
        )
    else:
        text = _subset(str(action.get("cluster", "?")))
    per_filter = route.get("typed_per_filter_config", {})
    fault = per_filter.get("envoy.filters.http.fault", {})
    if "delay" in fault:
        text += f"; delay {fault['delay']['fixed_delay']}"
    if "abort" in fault:
        abort = fault["abort"]
        text += f"; abort {abort.get('grpc_status', abort.get('http_status'))}"
    retry = action.get("retry_policy")
    if retry:
        text += f"; retries {retry.get('num_retries', 1)} on {retry.get('retry_on')}"
        if "per_try_timeout" in retry:
            text += f" (per try {retry['per_try_timeout']})"
    if action.get("timeout") not in (None, "0s"):
        text += f"; timeout {action['timeout']}"
    rbac = per_filter.get("envoy.filters.http.rbac.allow", {}).get("rbac", {}).get("rules")
    if rbac is not None:
        text += f"; {len(rbac.get('policies', {}))} ALLOW rule(s), else denied"
    return text


def _subset(cluster: str) -> str:
    """`outbound|50054|v2|orders` -> `orders v2`."""
    parts = cluster.split("|")
    if len(parts) != 4:
        return cluster
    if parts[0] == "inbound":
        return f"app :{parts[1]}"
    return f"{parts[3]} {parts[2]}".strip()
