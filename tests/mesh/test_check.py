"""mesh.check: the real mesh/ passes; each negative fixture fails for the reason it was made for."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from mesh.check import MeshError, load, load_checked
from mesh.check.__main__ import main
from mesh.check.contracts import load_contracts
from mesh.check.model import Resource, compose, display, render
from mesh.check.run import CRDS_VARIABLE, DEFAULT_CRD_DIR, Checker, Settings
from mesh.check.schemas import strict_schema
from mesh.check.semantic import DURATION_FIELDS, methods, parse_duration, secret_refs

# ISTIO_CRDS applies here as in `make mesh-check`, so a checkout without the shared folder
# beside it can still run the Istio schema tests.
SETTINGS = Settings.from_env()
FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.yaml"))
SCENARIOS = sorted((SETTINGS.mesh_dir / "scenarios").glob("*.yaml"))
HAVE_CRDS = SETTINGS.crd_file.is_file()
NO_CRDS = f"no Istio CRDs at {SETTINGS.crd_dir} (set {CRDS_VARIABLE})"


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker(SETTINGS)


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return list(render(SETTINGS.mesh_dir))


def header(fixture: Path, key: str) -> list[str]:
    return re.findall(rf"^# {key}: (.*)$", fixture.read_text(), re.MULTILINE)


def test_mesh_and_every_scenario_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    for scenario in SCENARIOS:
        assert f"ok   mesh + {display(scenario)}" in out


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_fixture_fails_for_its_reason(
    checker: Checker, base: list[Resource], fixture: Path
) -> None:
    if "istio-crds" in header(fixture, "needs") and not HAVE_CRDS:
        pytest.skip(NO_CRDS)
    (expected,) = header(fixture, "expect")
    try:
        findings = checker.check(compose(base, SETTINGS.mesh_dir, fixture))
    except MeshError as error:
        findings = list(error.findings)
    messages = [str(f) for f in findings]
    assert f"{display(fixture)}: {expected}" in "\n".join(messages)
    # One fault per file: nothing else in the mesh may fail because of it.
    assert all(m.startswith(display(fixture)) for m in messages), messages


def test_cli_reports_a_fixture_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = next(f for f in FIXTURES if f.stem == "weights-sum-90")
    assert main([str(fixture)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL mesh + {display(fixture)}" in out
    assert "VirtualService/orders: spec.http[0].route: weights sum to 90" in out


def test_missing_crds_skip_schema_checks_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture = next(f for f in FIXTURES if f.stem == "weights-sum-90")
    assert main(["--crds", str(tmp_path), str(fixture)]) == 1
    out = capsys.readouterr().out
    assert f"SKIPPED: Istio CRD schema validation: no Istio CRDs at {tmp_path}" in out
    assert "weights sum to 90" in out


def test_the_crd_folder_is_the_istio_crds_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Settings.from_env({}).crd_dir == DEFAULT_CRD_DIR
    assert (
        Settings.from_env({CRDS_VARIABLE: str(tmp_path)}).crd_file == tmp_path / "crd-all.gen.yaml"
    )
    monkeypatch.setenv(CRDS_VARIABLE, str(tmp_path))
    fixture = next(f for f in FIXTURES if f.stem == "weights-sum-90")
    assert main([str(fixture)]) == 1
    assert f"no Istio CRDs at {tmp_path} (set --crds or ISTIO_CRDS" in capsys.readouterr().out


def test_missing_descriptor_set_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--descriptors", str(tmp_path / "none.binpb")]) == 1
    assert "run `make descriptors`" in capsys.readouterr().err


def test_every_yaml_file_is_rendered(base: list[Resource]) -> None:
    sources = {r.source for r in base}
    files = {
        display(p)
        for folder in ("base", "istio")
        for p in (SETTINGS.mesh_dir / folder).rglob("*.yaml")
        if p.name != "kustomization.yaml"
    }
    assert sources == files


def test_scenario_replaces_and_deletes_by_identity() -> None:
    mesh = load_checked(SETTINGS, SETTINGS.mesh_dir / "scenarios" / "orders-canary-grpcroute.yaml")
    assert mesh.get("VirtualService", "orders") is None
    route = mesh.get("GRPCRoute", "orders-canary")
    assert route is not None
    assert route.source == "mesh/scenarios/orders-canary-grpcroute.yaml"
    weights = [r["weight"] for r in route.spec["rules"][0]["backendRefs"]]
    assert weights == [90, 10]

    canary = load(SETTINGS.mesh_dir, SETTINGS.mesh_dir / "scenarios" / "orders-canary-50-50.yaml")
    (orders,) = [vs for vs in canary.of_kind("VirtualService") if vs.name == "orders"]
    assert [d["weight"] for d in orders.spec["http"][0]["route"]] == [50, 50]
    assert "config.kubernetes.io/origin" not in str(canary.get("Deployment", "users"))


def test_gateway_may_call_only_methods_rest_exposes(checker: Checker, base: list[Resource]) -> None:
    mesh = compose(base, SETTINGS.mesh_dir, None)
    rest = checker.contracts.rest_methods - {"/shop.users.v1.UserService/GetUser"}
    contracts = dataclasses.replace(checker.contracts, rest_methods=rest)
    found = [str(f) for f in methods(mesh, contracts)]
    assert found == [
        "mesh/istio/users.yaml: AuthorizationPolicy/users: spec.rules[0].to[0].operation.paths[1]: "
        "'/shop.users.v1.UserService/GetUser' has no google.api.http binding, "
        "so REST cannot reach it"
    ]


def test_contracts_list_methods_from_the_descriptor_set() -> None:
    contracts = load_contracts(SETTINGS.descriptor_set)
    assert "/shop.payments.v1.PaymentService/ChargePayment" in contracts.methods
    assert "/shop.orders.v2.OrderService/WatchOrder" in contracts.rest_methods
    assert contracts.rest_methods <= contracts.methods


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1.5s", 1.5), ("100ms", 0.1), ("1m30s", 90.0), ("2h", 7200.0), ("250us", 0.00025)],
)
def test_parse_duration_accepts_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1.5", "s", "5 s", "1sec", "-1s", "1s ", "1d"])
def test_parse_duration_rejects_the_rest(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.skipif(not HAVE_CRDS, reason=NO_CRDS)
def test_duration_fields_are_those_the_crds_mark() -> None:
    marked: set[str] = set()

    def walk(node: object, name: str) -> None:
        if isinstance(node, dict):
            rules = node.get("x-kubernetes-validations") or []
            if any("duration(self)" in r.get("rule", "") for r in rules):
                marked.add(name)
            for key, sub in (node.get("properties") or {}).items():
                walk(sub, key)
            for key in ("items", "additionalProperties"):
                walk(node.get(key), name)

    with SETTINGS.crd_file.open() as stream:
        for crd in yaml.load_all(stream, Loader=yaml.CSafeLoader):
            if crd and crd["spec"]["names"]["kind"] in ("VirtualService", "DestinationRule"):
                for version in crd["spec"]["versions"]:
                    walk(version["schema"]["openAPIV3Schema"], "")
    assert marked == DURATION_FIELDS


def test_strict_schema_closes_objects_and_allows_null() -> None:
    schema = {
        "type": "object",
        "properties": {
            "nullable": {"type": "string", "nullable": True},
            "open": {
                "type": "object",
                "properties": {},
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
    }
    strict = strict_schema(schema)
    assert strict["additionalProperties"] is False
    assert strict["properties"]["nullable"] == {"type": ["string", "null"]}
    assert "additionalProperties" not in strict["properties"]["open"]


def test_database_urls_come_from_a_secret_that_has_their_key(base: list[Resource]) -> None:
    mesh = compose(copy.deepcopy(base), SETTINGS.mesh_dir, None)
    secret = mesh.get("Secret", "shop-database")
    users = mesh.get("Deployment", "users")
    assert secret is not None and users is not None
    env = users.spec["template"]["spec"]["containers"][0]["env"]
    (url,) = [e for e in env if e["name"] == "DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "shop-database", "key": "users-url"}
    assert [str(f) for f in secret_refs(mesh, load_contracts(SETTINGS.descriptor_set))] == []

    del secret.doc["stringData"]["payments-url"]
    url["valueFrom"]["secretKeyRef"]["name"] = "users-database"
    env.append({"name": "DATABASE_URL", "value": "postgresql://shop:secret@postgres/users"})
    found = [str(f) for f in secret_refs(mesh, load_contracts(SETTINGS.descriptor_set))]
    at = "mesh/base/{0}.yaml: Deployment/{0}: spec.template.spec.containers[0].env"
    assert sorted(found) == [
        f"{at.format('payments')}[3].valueFrom.secretKeyRef.key: "
        "Secret shop-database has no key 'payments-url'",
        f"{at.format('users')}[3].valueFrom.secretKeyRef.name: "
        "Secret 'users-database' is not in the mesh",
        f"{at.format('users')}[{len(env) - 1}].value: "
        "DATABASE_URL must come from a Secret (secretKeyRef)",
    ]


def test_orders_versions_share_one_database_in_the_cluster(base: list[Resource]) -> None:
    mesh = compose(base, SETTINGS.mesh_dir, None)

    def database_key(name: str) -> str:
        deployment = mesh.get("Deployment", name)
        assert deployment is not None
        env = deployment.spec["template"]["spec"]["containers"][0]["env"]
        (url,) = [e for e in env if e["name"] == "DATABASE_URL"]
        return str(url["valueFrom"]["secretKeyRef"]["key"])

    assert database_key("orders-v1") == database_key("orders-v2") == "orders-url"
    assert mesh.get("StatefulSet", "postgres") is not None
