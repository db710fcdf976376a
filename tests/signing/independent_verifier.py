"""A verifier of rtxpack bundle signatures written from docs/signing.md alone.

It does not import rtxpack: only the standard library, msgpack (to read the manifest) and
``cryptography``. tests/signing/test_signing_independent.py checks that it agrees with rtxpack.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://rtxpack.dev/bundle-signature/v1"


def key_id(pem: bytes) -> str:
    key = serialization.load_pem_public_key(pem)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _verify(pem: bytes, sig: bytes, message: bytes) -> bool:
    key = serialization.load_pem_public_key(pem)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, message)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return (
        b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body
    )


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _b64(text: str) -> bytes:
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(text.encode())
    return base64.b64decode(text.encode(), validate=True)


def read_manifest(path: Path) -> tuple[bytes, dict[str, Any]]:
    data = path.read_bytes()
    magic, major, _minor, _flags, m_off, m_len, _digest = struct.unpack("<8sHHIQQ32s", data[:64])
    assert magic == b"\x89RTXPACK" and major == 1 and m_off + m_len == len(data)
    return data, msgpack.unpackb(data[m_off : m_off + m_len], raw=False)


#: docs/signing.md "Normalized records": optional fields and their defaults, per part kind and
#: map ("" is the record itself)
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "engine": {
        "": {"output_tree": None, "build_options": None, "equal_dims": []},
        "strategy": {"weight_streaming_budget": None},
        "build_options": {
            "weight_streaming": False,
            "tiling_optimization_level": "none",
            "l2_limit_for_tiling": None,
            "max_aux_streams": None,
        },
    },
    "runtime_cache": {"": {"shapes": []}, "environment": {"compute_in_graphics": False}},
}


#: docs/signing.md "Parts": section indices, never part of an engine's signed record
ENGINE_INDEX_KEYS = ("section", "source", "samples", "source_data")


def normalize(name: str, record: Any) -> Any:
    table = DEFAULTS.get(name.split("/", 1)[0])
    if table is None or not isinstance(record, dict):
        return record
    out = {}
    for key, value in record.items():
        if name.startswith("engine/") and key in ENGINE_INDEX_KEYS:
            continue
        if key in table[""] and _same(value, table[""][key]):
            continue
        if key and key in table and isinstance(value, dict):
            value = {
                k: v for k, v in value.items() if not (k in table[key] and _same(v, table[key][k]))
            }
        out[key] = value
    return out


def parts(manifest: dict[str, Any]) -> dict[str, tuple[str, str, Any, dict[str, str]]]:
    """name -> (role, hex digest, record or None, bound subjects)"""
    hexd = [s["digest"].split(":", 1)[1] for s in manifest["sections"]]
    out: dict[str, tuple[str, str, Any, dict[str, str]]] = {}
    for e in manifest["engines"]:
        rec = {k: v for k, v in e.items() if k not in ENGINE_INDEX_KEYS}
        out["engine/" + e["name"]] = ("engines", hexd[e["section"]], rec, {})
        if e.get("source") is not None:
            data = [[manifest["sections"][i]["name"], hexd[i]] for i in e.get("source_data", [])]
            src = {"data": data} if data else None
            out["source/" + e["name"]] = ("engines", hexd[e["source"]], src, {})
        if e.get("samples") is not None:
            out["samples/" + e["name"]] = ("engines", hexd[e["samples"]], None, {})
    for name, index in manifest.get("files", {}).items():
        out["file/" + name] = ("engines", hexd[index], None, {})
    engine_digest = {e["name"]: hexd[e["section"]] for e in manifest["engines"]}
    for c in manifest.get("caches", []):
        rec = {k: v for k, v in c.items() if k != "section"}
        binds = {"engine/" + c["engine"]: engine_digest[c["engine"]]}
        out["runtime_cache/" + c["id"]] = ("caches", hexd[c["section"]], rec, binds)
    return out


def trusted_parts(path: Path, trusted: dict[str, list[bytes]]) -> dict[str, set[str]]:
    """For each part of the bundle: the key ids of trusted signers that cover it.

    ``trusted`` maps a role ("engines", "caches") to the PEM public keys trusted for it."""
    data, manifest = read_manifest(path)
    keys = {role: {key_id(pem): pem for pem in pems} for role, pems in trusted.items()}
    present = parts(manifest)
    result: dict[str, set[str]] = {name: set() for name in present}
    for s in manifest["sections"]:
        if s["kind"] != "signature":
            continue
        if s["codec"] != "stored" or s["length"] > 4 * 1024 * 1024:
            continue
        raw = data[s["offset"] : s["offset"] + s["length"]]
        try:
            env = json.loads(raw.decode(), object_pairs_hook=_no_dupes)
            assert env["payloadType"] == PAYLOAD_TYPE
            payload = _b64(env["payload"])
            statement = json.loads(payload.decode(), object_pairs_hook=_no_dupes)
            assert statement["_type"] == STATEMENT and statement["predicateType"] == PREDICATE
            role = statement["predicate"]["role"]
            records = statement["predicate"].get("records", {})
            subjects = {x["name"]: x["digest"]["blake3"] for x in statement["subject"]}
            assert len(subjects) == len(statement["subject"])
            assert all(name in subjects for name in records)
            assert role in ("engines", "caches") and isinstance(records, dict)
            message = _pae(PAYLOAD_TYPE, payload)
            signers = []
            for sig in env["signatures"]:
                pem = keys.get(role, {}).get(sig.get("keyid", ""))
                if pem is not None and _verify(pem, _b64(sig["sig"]), message):
                    signers.append(sig["keyid"])
        except (ValueError, KeyError, TypeError, AssertionError, AttributeError):
            continue  # damaged: vouches for nothing
        if not signers:
            continue
        for name, (part_role, digest, record, binds) in present.items():
            if part_role != role or subjects.get(name) != digest:
                continue
            if record is None and name in records:
                continue
            if record is not None and not (
                name in records and _same(normalize(name, records[name]), normalize(name, record))
            ):
                continue
            if any(subjects.get(n) != d for n, d in binds.items()):
                continue
            result[name].update(signers)
    return result
