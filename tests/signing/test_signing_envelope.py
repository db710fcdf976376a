"""DSSE envelopes and in-toto Statements: the encoding, and the strict parser's refusals."""

from __future__ import annotations

import base64
import json

import pytest

from rtxpack._exceptions import SignatureError
from rtxpack._signing import PrivateKey
from rtxpack._signing.envelope import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Envelope,
    SignatureLimits,
    Statement,
    pae,
)

DIGEST = "ab" * 32


def test_pae_matches_the_dsse_spec() -> None:
    # the example from DSSE's protocol.md
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    # lengths count bytes, not characters
    assert pae("\u00e9", b"x").startswith(b"DSSEv1 2 \xc3\xa9 1 x")


def test_envelope_round_trip_and_signature() -> None:
    key = PrivateKey.generate()
    st = Statement(
        "engines", {"engine/main": DIGEST}, {"engine/main": {"a": 1}}, "2026-01-01T00:00:00Z"
    )
    env = Envelope.sign(st.to_json(), key)
    raw = json.loads(env.to_json())
    assert raw["payloadType"] == PAYLOAD_TYPE
    assert raw["signatures"][0]["keyid"] == key.key_id
    statement = json.loads(base64.b64decode(raw["payload"]))
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"] == [{"name": "engine/main", "digest": {"blake3": DIGEST}}]
    back = Envelope.parse(env.to_json(), "e")
    assert back == env
    assert key.public_key.verify(back.signatures[0].sig, pae(PAYLOAD_TYPE, back.payload))
    assert Statement.parse(back.payload, "s") == st


def _envelope(**changes: object) -> bytes:
    key = PrivateKey.generate()
    env = json.loads(Envelope.sign(Statement("engines", {"a": DIGEST}).to_json(), key).to_json())
    env.update(changes)
    return json.dumps(env).encode()


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "not strict JSON"),
        (b"\xff\xfe", "not strict JSON"),
        (b"[]", "an object"),
        (b'{"payload": "", "payload": ""}', "duplicate key"),
        (b'{"x": NaN}', "not strict JSON"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b'{"a":' * 70 + b"1" + b"}" * 70, "nested too deeply"),
        (b"1" + b"0" * 5000, "not strict JSON"),  # an integer beyond Python's digit limit
        (_envelope(payloadType="application/json"), "payloadType"),
        (_envelope(payload="!!!!"), "base64"),
        (_envelope(payload="abc"), "padded base64"),
        (_envelope(payload="YQ=a"), "base64"),
        (_envelope(signatures=[]), "signatures"),
        (_envelope(signatures=[{"keyid": "k"}] * 17), "signatures"),
        (_envelope(signatures=[{"keyid": "k"}]), "sig"),
        (_envelope(signatures=[{"keyid": 5, "sig": ""}]), "keyid"),
        (_envelope(signatures=[{"keyid": "k", "sig": "A" * 2000}]), "sig"),
        (_envelope(signatures="x"), "signatures"),
    ],
)
def test_envelope_parser_refuses(data: bytes, match: str) -> None:
    with pytest.raises(SignatureError, match=match):
        Envelope.parse(data, "sig")


def test_envelope_size_is_bounded() -> None:
    data = _envelope(padding="x" * 2000)
    with pytest.raises(SignatureError, match="at most 1000 bytes"):
        Envelope.parse(data, "sig", SignatureLimits(max_envelope_bytes=1000))
    Envelope.parse(data, "sig")  # within the default limit; unknown fields are ignored (DSSE)


def test_url_safe_base64_is_accepted() -> None:
    key = PrivateKey.generate()
    env = Envelope.sign(b"\xfb\xff" * 10, key)
    raw = json.loads(env.to_json())
    raw["payload"] = base64.urlsafe_b64encode(env.payload).decode()
    assert "-" in raw["payload"] or "_" in raw["payload"]
    assert Envelope.parse(json.dumps(raw).encode(), "e").payload == env.payload


def _statement(**changes: object) -> bytes:
    st = json.loads(Statement("engines", {"engine/a": DIGEST}, {"engine/a": {}}).to_json())
    for k, v in changes.items():
        if k.startswith("predicate."):
            st["predicate"][k.split(".", 1)[1]] = v
        else:
            st[k] = v
    return json.dumps(st).encode()


@pytest.mark.parametrize(
    "data,match",
    [
        (_statement(_type="https://in-toto.io/Statement/v0.1"), "_type"),
        (_statement(predicateType="https://slsa.dev/provenance/v1"), "predicateType"),
        (_statement(subject=[]), "subject"),
        (_statement(subject=[{"name": "a", "digest": {"sha256": DIGEST}}]), "blake3"),
        (_statement(subject=[{"name": "a", "digest": {"blake3": DIGEST.upper()}}]), "blake3"),
        (_statement(subject=[{"name": "a", "digest": {"blake3": DIGEST[:-1]}}]), "blake3"),
        (_statement(subject=[{"name": 1, "digest": {"blake3": DIGEST}}]), "name"),
        (_statement(subject=[{"name": "a", "digest": {"blake3": DIGEST}}] * 2), "unique"),
        (_statement(subject=[[]]), "an object"),
        (_statement(predicate=[]), "predicate"),
        (_statement(**{"predicate.role": "admin"}), "role"),
        (_statement(**{"predicate.records": {"engine/other": {}}}), "records of subjects"),
        (_statement(**{"predicate.records": []}), "records"),
        (_statement(**{"predicate.signed_at": 5}), "signed_at"),
    ],
)
def test_statement_parser_refuses(data: bytes, match: str) -> None:
    with pytest.raises(SignatureError, match=match):
        Statement.parse(data, "st")


def test_statement_ignores_other_digest_algorithms_and_fields() -> None:
    st = json.loads(_statement())
    st["subject"][0]["digest"]["sha256"] = "00" * 32
    st["subject"][0]["uri"] = "x"
    st["extra"] = {"a": 1}
    parsed = Statement.parse(json.dumps(st).encode(), "st")
    assert parsed.subjects == {"engine/a": DIGEST}
