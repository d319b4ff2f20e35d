"""The compatibility gate on scratch copies of `contracts/avro` (and, for the history, a scratch git
repository): what each mode must reject, what it must let through, and how it says so."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import compat
from contracts.schemas import AVRO_ROOT
from tools import breaking
from tools import compat as gate
from tools.protos import PROTO_ROOT

Schema = dict[str, Any]
CONFIRMED = "shop.orders.OrderConfirmed"
PLACED = "shop.orders.OrderPlaced"
COUPON = {"name": "coupon", "type": "string"}


@pytest.fixture
def avro(tmp_path: Path) -> Path:
    """A scratch copy of contracts/avro."""
    return Path(shutil.copytree(AVRO_ROOT, tmp_path / "avro"))


def publish(root: Path, subject: str, edit: Callable[[Schema], None], mode: str = "") -> None:
    """Add the next version of `subject`: its newest schema changed by `edit`, with the next free
    id and, if given, a new mode."""
    config = yaml.safe_load((root / "subjects.yaml").read_text())
    ids = config["subjects"][subject]["ids"]
    version = len(ids) + 1
    schema = json.loads((root / subject / f"v{version - 1}.avsc").read_text())
    edit(schema)
    (root / subject / f"v{version}.avsc").write_text(json.dumps(schema, indent=2))
    ids[version] = 1 + max(i for s in config["subjects"].values() for i in s["ids"].values())
    (root / "subjects.yaml").write_text(yaml.safe_dump(config))
    if mode:
        set_mode(root, subject, mode)


def set_mode(root: Path, subject: str, mode: str) -> None:
    config = yaml.safe_load((root / "subjects.yaml").read_text())
    config["subjects"][subject]["compatibility"] = mode
    (root / "subjects.yaml").write_text(yaml.safe_dump(config))


def without(name: str) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != name]

    return edit


def adding(new: dict[str, Any]) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        schema["fields"].insert(-1, new)

    return edit


def lines(root: Path, baseline: Path | None = None) -> list[str]:
    return [str(problem) for problem in compat.check(root, baseline)]


def file(subject: str, version: int) -> str:
    return f"contracts/avro/{subject}/v{version}.avsc"


def test_backward_rejects_a_new_field_without_default(avro: Path) -> None:
    # The issue words this as "a field removed without a default under BACKWARD": under Avro's
    # rules a BACKWARD reader ignores removed fields; what it cannot do is invent a new one.
    publish(avro, CONFIRMED, adding(COUPON), mode="BACKWARD")

    assert lines(avro) == [
        f"{file(CONFIRMED, 2)}: {CONFIRMED}: v2 cannot read v1:"
        " field 'coupon' is missing from v1 and has no default in v2 (BACKWARD)"
    ]


def test_backward_accepts_a_removed_field(avro: Path) -> None:
    publish(avro, CONFIRMED, without("payment_id"), mode="BACKWARD")

    assert lines(avro) == []


def test_forward_rejects_removing_a_field_without_default(avro: Path) -> None:
    # The issue says "a FORWARD subject rejects adding a required field"; under Avro's rules the
    # old reader skips a field it does not know, so FORWARD breaks on removals instead.
    publish(avro, CONFIRMED, without("payment_id"), mode="FORWARD")

    assert lines(avro) == [
        f"{file(CONFIRMED, 2)}: {CONFIRMED}: v1 cannot read v2:"
        " field 'payment_id' is missing from v2 and has no default in v1 (FORWARD)"
    ]


def test_forward_accepts_a_new_field_without_default(avro: Path) -> None:
    publish(avro, CONFIRMED, adding(COUPON), mode="FORWARD")

    assert lines(avro) == []


def test_a_new_field_with_a_default_passes_even_full_transitive(avro: Path) -> None:
    publish(avro, PLACED, adding({"name": "coupon", "type": ["null", "string"], "default": None}))

    assert compat.check(avro) == []


def test_full_checks_both_directions(avro: Path) -> None:
    publish(avro, CONFIRMED, adding(COUPON), mode="FULL")

    [problem] = compat.check(avro)

    assert problem.what.startswith("v2 cannot read v1: field 'coupon'")
    publish(avro, CONFIRMED, without("payment_id"), mode="FULL")
    assert any(
        p.what.startswith("v2 cannot read v3: field 'payment_id'") for p in compat.check(avro)
    )


def rename_line(alias: bool) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        line = schema["fields"][2]["type"]["items"]
        line["name"] = "LineItem"
        if alias:
            line["aliases"] = ["shop.orders.OrderLine"]

    return edit


def test_renamed_type_without_alias_fails(avro: Path) -> None:
    publish(avro, PLACED, rename_line(alias=False), mode="BACKWARD")

    assert lines(avro) == [
        f"{file(PLACED, 3)}: {PLACED}: v3 cannot read v2: field 'items[]' is type"
        " shop.orders.LineItem in v3 but shop.orders.OrderLine in v2, and v3 has no alias for it"
        " (BACKWARD)"
    ]


def test_renamed_type_with_alias_passes_backward(avro: Path) -> None:
    publish(avro, PLACED, rename_line(alias=True), mode="BACKWARD")

    assert lines(avro) == []


def test_changed_type_fails_in_both_directions(avro: Path) -> None:
    def quantity_as_string(schema: Schema) -> None:
        schema["fields"][2]["type"]["items"]["fields"][1]["type"] = "string"

    publish(avro, PLACED, quantity_as_string)

    assert lines(avro) == [
        f"{file(PLACED, 3)}: {PLACED}: v1 cannot read v3:"
        " field 'items[].quantity' is int in v1 but string in v3 (FULL_TRANSITIVE)",
        f"{file(PLACED, 3)}: {PLACED}: v2 cannot read v3:"
        " field 'items[].quantity' is int in v2 but string in v3 (FULL_TRANSITIVE)",
        f"{file(PLACED, 3)}: {PLACED}: v3 cannot read v1:"
        " field 'items[].quantity' is string in v3 but int in v1 (FULL_TRANSITIVE)",
        f"{file(PLACED, 3)}: {PLACED}: v3 cannot read v2:"
        " field 'items[].quantity' is string in v3 but int in v2 (FULL_TRANSITIVE)",
    ]


def test_a_cause_inside_a_writer_union_names_its_field(avro: Path) -> None:
    # avro itself reports this one at the root: the gate must still place it.
    def country_required(schema: Schema) -> None:
        schema["fields"][3] = {"name": "shipping_country", "type": "string"}

    publish(avro, PLACED, country_required, mode="BACKWARD")

    assert [p.what for p in compat.check(avro)] == [
        "v3 cannot read v2: field 'shipping_country' is string in v3 but null in v2"
    ]


def test_several_causes_are_one_line_each(avro: Path) -> None:
    def two_breaks(schema: Schema) -> None:
        schema["fields"][2] = {"name": "total_cents", "type": "string"}
        schema["fields"].insert(0, COUPON)

    publish(avro, CONFIRMED, two_breaks)

    assert [p.what for p in compat.check(avro)] == [
        "v2 cannot read v1: field 'coupon' is missing from v1 and has no default in v2",
        "v2 cannot read v1: field 'total_cents' is string in v2 but long in v1",
    ]


def test_transitive_modes_check_every_earlier_version(avro: Path) -> None:
    def coupon_required(schema: Schema) -> None:
        schema["fields"] = [COUPON if f["name"] == "coupon" else f for f in schema["fields"]]

    publish(avro, CONFIRMED, adding({**COUPON, "default": ""}))
    # v3 drops coupon's default: it still reads v2, which writes a coupon, but not v1.
    publish(avro, CONFIRMED, coupon_required)

    assert lines(avro) == [
        f"{file(CONFIRMED, 3)}: {CONFIRMED}: v3 cannot read v1:"
        " field 'coupon' is missing from v1 and has no default in v3 (BACKWARD_TRANSITIVE)"
    ]
    set_mode(avro, CONFIRMED, "BACKWARD")
    assert lines(avro) == []


def test_none_checks_nothing(avro: Path) -> None:
    publish(avro, CONFIRMED, adding(COUPON), mode="NONE")

    assert lines(avro) == []


def test_a_version_without_an_id_is_reported(avro: Path) -> None:
    shutil.copyfile(avro / CONFIRMED / "v1.avsc", avro / CONFIRMED / "v2.avsc")

    assert lines(avro) == [
        f"{file(CONFIRMED, 2)}: {CONFIRMED}: v2 has no id in subjects.yaml, so it is not checked"
    ]


def test_an_inconsistent_registry_is_reported(avro: Path) -> None:
    config = avro / "subjects.yaml"
    config.write_text(
        config.read_text().replace(
            "default_compatibility: BACKWARD_TRANSITIVE", "default_compatibility: SIDEWAYS"
        )
    )

    [line] = lines(avro)

    assert line.startswith("contracts/avro: subjects.yaml: ")
    assert "unknown compatibility mode 'SIDEWAYS'" in line


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=gate",
            "-c",
            "user.email=gate@example.com",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A scratch git repository whose one commit holds a copy of contracts/avro."""
    root = tmp_path / "repo"
    shutil.copytree(AVRO_ROOT, root / "contracts" / "avro")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "baseline")
    return root


def run_gate(capsys: pytest.CaptureFixture[str], repo: Path) -> tuple[int, list[str], str]:
    code = gate.main(["--against", "HEAD", "--repo", str(repo)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_an_edited_published_version_fails(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = repo / "contracts" / "avro" / CONFIRMED / "v1.avsc"
    path.write_text(
        path.read_text().replace('"total_cents", "type": "long"', '"total_cents", "type": "int"')
    )

    code, out, err = run_gate(capsys, repo)

    assert code == 1
    assert out == [
        f"{file(CONFIRMED, 1)}: {CONFIRMED}: published v1 changed (only its docs may change):"
        " add a new version (immutable)"
    ]
    assert "1 problem(s) against HEAD (1 Avro, 0 protobuf)" in err


def test_a_changed_default_in_a_published_version_fails(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The parsing canonical form drops defaults, so this needs more than canonical forms.
    path = repo / "contracts" / "avro" / PLACED / "v2.avsc"
    path.write_text(path.read_text().replace('"default": null', '"default": null, "aliases": []'))
    path.write_text(path.read_text().replace('"timestamp-micros"', '"timestamp-millis"'))

    code, out, _ = run_gate(capsys, repo)

    assert code == 1
    assert out == [
        f"{file(PLACED, 2)}: {PLACED}: published v2 changed (only its docs may change):"
        " add a new version (immutable)"
    ]


def test_doc_edits_to_a_published_version_pass(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = repo / "contracts" / "avro" / CONFIRMED / "v1.avsc"
    path.write_text(path.read_text().replace("Amount charged, in cents.", "What was charged."))

    code, out, _ = run_gate(capsys, repo)

    assert (code, out) == (0, [])


def test_changed_ids_and_removed_versions_fail(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    avro = repo / "contracts" / "avro"
    config = avro / "subjects.yaml"
    text = (
        config.read_text()
        .replace("ids: {1: 1, 2: 6}", "ids: {1: 1}")
        .replace("ids: {1: 2}", "ids: {1: 7}")
    )
    config.write_text(text)
    (avro / PLACED / "v2.avsc").unlink()

    code, out, _ = run_gate(capsys, repo)

    assert code == 1
    assert out == [
        f"{file(PLACED, 2)}: {PLACED}: published v2 removed (immutable)",
        f"contracts/avro/subjects.yaml: {CONFIRMED}: v1 id changed from 2 to 7 (immutable)",
        f"contracts/avro/subjects.yaml: {PLACED}: published v2 (id 6) removed (immutable)",
    ]


def test_a_missing_baseline_still_checks_the_modes(
    avro: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "fresh"
    shutil.copytree(avro, root / "contracts" / "avro")
    git(root, "init", "-q")
    publish(root / "contracts" / "avro", CONFIRMED, adding(COUPON))

    code, out, err = run_gate(capsys, root)

    assert code == 1
    assert "'HEAD' does not exist" in err
    assert len(out) == 1 and "field 'coupon' is missing from v1" in out[0]


def test_the_real_schemas_pass(tmp_path: Path) -> None:
    note = breaking.export_ref("HEAD", tmp_path, compat.LABEL)
    baseline = None if note is not None else tmp_path / compat.LABEL

    assert compat.check(AVRO_ROOT, baseline) == []


def test_protobuf_breaks_are_in_the_same_report(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(PROTO_ROOT, repo / "proto")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "protos")
    users = repo / "proto" / "shop" / "users" / "v1" / "users.proto"
    users.write_text(
        users.read_text().replace("string display_name = 3;", "string display_name = 5;")
    )
    publish(repo / "contracts" / "avro", CONFIRMED, adding(COUPON))

    code, out, err = run_gate(capsys, repo)

    assert code == 1
    assert any(line.startswith(file(CONFIRMED, 2)) for line in out), out
    assert any(
        line.startswith("proto/shop/users/v1/users.proto:")
        and 'field "3" with name "display_name"' in line
        and line.endswith("(buf FILE)")
        for line in out
    ), out
    assert "against HEAD (1 Avro, " in err
