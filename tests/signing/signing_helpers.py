"""An attacker's tools for the signing tests: manifest edits and section swaps with every
digest fixed up, as someone rewriting the file by hand would."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import msgpack
import zstandard

import rtxpack
from rtxpack._format.manifest import Environment

HEADER = struct.Struct("<8sHHIQQ32s")
ENV_4090 = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
ENV_5090_WIN = Environment("1.7.1.116", "NVIDIA GeForce RTX 5090", "12.0", "581.08", "windows")


def read_raw(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    _, _, _, _, m_off, m_len, _ = HEADER.unpack(data[:64])
    raw: dict[str, Any] = msgpack.unpackb(data[m_off : m_off + m_len], raw=False)
    return raw


def edit_manifest(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """What an attacker does: change the manifest and fix up the header's length and digest."""
    data = path.read_bytes()
    magic, major, minor, flags, m_off, m_len, _ = HEADER.unpack(data[:64])
    raw = msgpack.unpackb(data[m_off : m_off + m_len], raw=False)
    edit(raw)
    blob = msgpack.packb(raw, use_bin_type=True)
    header = HEADER.pack(magic, major, minor, flags, m_off, len(blob), blake3.blake3(blob).digest())
    path.write_bytes(header + data[64:m_off] + blob)


def replace_section(path: Path, index: int, decoded: bytes) -> None:
    """Put new bytes in section ``index`` (appended before the manifest) and fix every digest,
    as an attacker who rewrites the file would."""
    data = path.read_bytes()
    magic, major, minor, flags, m_off, m_len, _ = HEADER.unpack(data[:64])
    raw = msgpack.unpackb(data[m_off : m_off + m_len], raw=False)
    s = raw["sections"][index]
    stored = decoded if s["codec"] == "stored" else zstandard.compress(decoded)
    start = m_off + (-m_off % 4096)
    s.update(
        offset=start,
        length=len(stored),
        size=len(decoded),
        digest="blake3:" + blake3.blake3(decoded).hexdigest(),
    )
    body = data[64:m_off] + bytes(start - m_off) + stored
    blob = msgpack.packb(raw, use_bin_type=True)
    new_m_off = 64 + len(body)
    header = HEADER.pack(
        magic, major, minor, flags, new_m_off, len(blob), blake3.blake3(blob).digest()
    )
    path.write_bytes(header + body + blob)


def section_bytes(path: Path, index: int) -> bytes:
    with rtxpack.open(path) as b:
        return bytes(b.read_section(index))


#: Where ``mutate_envelope`` changes a value.
PLACES = ("envelope", "signature", "statement", "subject", "predicate", "records", "record")


def mutate_envelope(envelope: bytes, where: str, key: str, value: Any) -> bytes:
    """Set ``key`` to ``value`` in one place of a DSSE envelope or of the statement inside it
    (re-encoded into the payload, so the signature no longer covers it)."""
    env = json.loads(envelope)
    statement = json.loads(base64.b64decode(env["payload"]))
    records = statement["predicate"]["records"]
    target = {
        "envelope": env,
        "signature": env["signatures"][0],
        "statement": statement,
        "subject": statement["subject"][0],
        "predicate": statement["predicate"],
        "records": records,
        "record": next(iter(records.values())),
    }[where]
    target[key] = value
    if where not in ("envelope", "signature"):
        env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(env).encode()
