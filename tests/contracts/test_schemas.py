"""The Avro registry of contracts/avro and the wire format: ids, headers, schema resolution."""

from __future__ import annotations

import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.schemas import AVRO_ROOT, DecodeError, Registry, RegistryError, decode, encode

PLACED = "shop.orders.OrderPlaced"
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
V1_RECORD = {
    "order_id": "ord_1",
    "user_id": "usr_ann",
    "items": [{"product_id": "sku-mug", "quantity": 2}],
    "occurred_at": WHEN,
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


def test_every_subject_loads_with_unique_ids(registry: Registry) -> None:
    ids = [v.schema_id for s in registry.subjects.values() for v in s.versions]
    assert len(ids) == len(set(ids))
    assert set(registry.subjects) == {
        "shop.orders.OrderPlaced",
        "shop.orders.OrderConfirmed",
        "shop.orders.OrderCancelled",
        "shop.payments.PaymentCaptured",
        "shop.payments.PaymentRefunded",
    }
    assert registry.subject(PLACED).compatibility == "FULL_TRANSITIVE"
    assert registry.subject("shop.orders.OrderConfirmed").compatibility == "BACKWARD_TRANSITIVE"


def test_payload_is_confluent_wire_format(registry: Registry) -> None:
    v1 = registry.subject(PLACED).versions[0]
    payload = encode(v1, V1_RECORD)
    assert payload[0] == 0
    assert struct.unpack(">I", payload[1:5]) == (v1.schema_id,)


def test_a_newer_reader_reads_an_older_event(registry: Registry) -> None:
    v1, v2 = registry.subject(PLACED).versions
    record = decode(registry, encode(v1, V1_RECORD), v2)
    assert record == {**V1_RECORD, "shipping_country": None}  # the v2 field's default


def test_an_older_reader_reads_a_newer_event_where_the_mode_is_full(registry: Registry) -> None:
    v1, v2 = registry.subject(PLACED).versions
    record = decode(registry, encode(v2, {**V1_RECORD, "shipping_country": "DE"}), v1)
    assert record == V1_RECORD  # the field v1 does not know is skipped


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "no wire-format header"),
        (b"\x01\x00\x00\x00\x01rest", "magic byte is 1"),
        (b"\x00\x00\x00\x03\xe7rest", "unknown schema id 999"),
        (b"\x00\x00\x00\x00\x01\x0a", "shop.orders.OrderPlaced v1"),  # truncated record
    ],
)
def test_undecodable_payloads_raise_a_decode_error(
    registry: Registry, payload: bytes, message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(registry, payload, registry.subject(PLACED).latest)


def test_a_payload_of_another_subject_is_refused(registry: Registry) -> None:
    cancelled = registry.subject("shop.orders.OrderCancelled").latest
    record = {"order_id": "o", "user_id": "u", "reason": "r", "occurred_at": WHEN}
    with pytest.raises(DecodeError, match=r"expected shop\.orders\.OrderPlaced"):
        decode(registry, encode(cancelled, record), registry.subject(PLACED).latest)


def scratch(tmp_path: Path) -> Path:
    root = tmp_path / "avro"
    shutil.copytree(AVRO_ROOT, root)
    return root


def test_a_duplicate_id_is_refused(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    config = root / "subjects.yaml"
    config.write_text(config.read_text().replace("ids: {1: 2}", "ids: {1: 1}"))
    with pytest.raises(RegistryError, match=r"id 1 is also shop\.orders\.OrderPlaced v1"):
        Registry.load(root)


def test_a_declared_version_without_its_file_is_refused(tmp_path: Path) -> None:
    root = scratch(tmp_path)
    (root / PLACED / "v2.avsc").unlink()
    with pytest.raises(RegistryError, match=r"v2.avsc: missing"):
        Registry.load(root)
