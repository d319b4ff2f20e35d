"""The breaking-change gate on scratch copies of the contracts: what must fail, what must pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.api import http_pb2

from tools import breaking
from tools.breaking import Binding, Rpc, rest_breaks
from tools.protos import PROTO_ROOT

USERS = "shop/users/v1/users.proto"
GET_USER = """  // GetUser returns one user by id.
  rpc GetUser(GetUserRequest) returns (GetUserResponse) {
    option (google.api.http) = {get: "/v1/users/{user_id}"};
  }
"""


@pytest.fixture
def protos(tmp_path: Path) -> tuple[Path, Path]:
    """Two scratch copies of proto/: the baseline and the one each test edits."""
    baseline, current = tmp_path / "baseline", tmp_path / "current"
    shutil.copytree(PROTO_ROOT, baseline)
    shutil.copytree(PROTO_ROOT, current)
    return baseline, current


def edit(root: Path, name: str, old: str, new: str) -> int:
    """Replace `old`, which must occur once, by `new`; return the line where `new` starts."""
    path = root / name
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {name}"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def gate(
    capsys: pytest.CaptureFixture[str], baseline: Path, current: Path
) -> tuple[int, list[str]]:
    """Run the gate's command line; return its exit code and the breaks it printed."""
    code = breaking.main(["--proto", str(current), "--against-dir", str(baseline)])
    return code, capsys.readouterr().out.splitlines()


def test_renumbered_field_fails(
    protos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    baseline, current = protos
    edit(current, USERS, "string display_name = 3;", "string display_name = 5;")

    code, lines = gate(capsys, baseline, current)

    assert code == 1
    assert any(
        line.startswith(f"proto/{USERS}:")
        and 'field "3" with name "display_name" on message "User"' in line
        for line in lines
    ), lines


def test_changed_rest_path_fails(
    protos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    baseline, current = protos
    line = edit(current, USERS, '{get: "/v1/users/{user_id}"}', '{get: "/v1/people/{user_id}"}')

    code, lines = gate(capsys, baseline, current)

    assert code == 1
    assert lines == [
        f"proto/{USERS}:{line} shop.users.v1.UserService.GetUser: REST binding"
        ' GET /v1/users/{user_id} changed: path "/v1/users/{user_id}"'
        ' is now "/v1/people/{user_id}"'
    ]


def test_removed_rpc_fails_and_reports_its_lost_binding(
    protos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    baseline, current = protos
    start = edit(current, USERS, GET_USER, "")

    code, lines = gate(capsys, baseline, current)

    assert code == 1
    assert any('RPC "GetUser" on service "UserService" was deleted' in line for line in lines)
    # The lost binding is located in the baseline file, on its option line.
    assert (
        f"proto/{USERS}:{start + 2} shop.users.v1.UserService.GetUser:"
        " rpc removed, so REST binding GET /v1/users/{user_id} is gone"
    ) in lines


ADDITIONS = {
    "field": (
        "message User {\n",
        "message User {\n  // Phone number, if given.\n  string phone = 5;\n",
    ),
    "rpc": (
        GET_USER,
        GET_USER + "\n  // FindUser returns one user by email.\n"
        "  rpc FindUser(GetUserRequest) returns (GetUserResponse) {\n"
        '    option (google.api.http) = {get: "/v1/users:find"};\n  }\n',
    ),
    "additional binding": (
        '{get: "/v1/users/{user_id}"}',
        '{\n      get: "/v1/users/{user_id}"\n'
        '      additional_bindings {get: "/v1/customers/{user_id}"}\n    }',
    ),
}


@pytest.mark.parametrize("addition", sorted(ADDITIONS))
def test_additions_pass(
    addition: str, protos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    baseline, current = protos
    edit(current, USERS, *ADDITIONS[addition])

    code, lines = gate(capsys, baseline, current)

    assert (code, lines) == (0, [])


def test_protos_that_do_not_build_stop_the_gate(
    protos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    baseline, current = protos
    edit(current, USERS, "message User {", "message User {{")

    code = breaking.main(["--proto", str(current), "--against-dir", str(baseline)])

    assert code == 2
    assert "buf build failed for the current protos" in capsys.readouterr().err


def test_missing_ref_is_a_note_not_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code = breaking.main(["--against", "refs/heads/no-such-branch-for-the-gate"])

    assert code == 0
    assert "does not exist" in capsys.readouterr().err


def test_git_ref_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert breaking.export_ref("HEAD", tmp_path) is None
    current = tmp_path / "proto"
    edit(current, USERS, '{get: "/v1/users/{user_id}"}', '{get: "/v1/people/{user_id}"}')

    code = breaking.main(["--proto", str(current), "--against", "HEAD"])

    assert code == 1
    assert "GET /v1/users/{user_id} changed" in capsys.readouterr().out


OLD = Binding("POST", "/v1/orders", "*", "")


def rpc(*bindings: Binding) -> dict[str, Rpc]:
    return {"shop.orders.v1.OrderService.PlaceOrder": Rpc("orders.proto", 7, bindings)}


@pytest.mark.parametrize(
    ("new", "what"),
    [
        (
            Binding("POST", "/v1/orders", "order", ""),
            'REST binding POST /v1/orders body="*" changed: body "*" is now "order"',
        ),
        (
            Binding("PUT", "/v1/orders", "*", "order"),
            'REST binding POST /v1/orders body="*" changed: verb "POST" is now "PUT";'
            ' response_body "" is now "order"',
        ),
    ],
)
def test_changed_binding_parts_are_named(new: Binding, what: str) -> None:
    [found] = rest_breaks(rpc(new), rpc(OLD))

    assert str(found) == f"orders.proto:7 shop.orders.v1.OrderService.PlaceOrder: {what}"


def test_removed_additional_binding_fails() -> None:
    extra = Binding("POST", "/v1/purchases", "*", "")

    [found] = rest_breaks(rpc(OLD), rpc(OLD, extra))

    assert found.what == 'REST binding POST /v1/purchases body="*" removed'


def test_moving_a_binding_between_primary_and_additional_passes() -> None:
    extra = Binding("POST", "/v1/purchases", "*", "")

    assert rest_breaks(rpc(extra, OLD), rpc(OLD, extra)) == []


def test_wildcard_variable_is_the_same_template() -> None:
    short = http_pb2.HttpRule(get="/v1/users/{user_id}")
    long = http_pb2.HttpRule(get="/v1/users/{user_id=*}")

    assert breaking.bindings_of([short]) == breaking.bindings_of([long])
