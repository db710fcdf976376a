"""The format 1.1 golden bundle: it reads, and its two signatures verify, forever."""

from __future__ import annotations

import sys
from pathlib import Path

import rtxpack
from rtxpack._format import container
from rtxpack._signing import TrustPolicy
from rtxpack._signing.bundle import trust_report

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v1.1"
GOLDEN_DIGEST = "blake3:7bfc47b0b67776a7456370e393e16ca5ab115cb5f7e6bec27c1e04fd6efb9a7d"
PARTS = {
    "engine/main",
    "source/main",
    "samples/main",
    "file/labels.txt",
    "runtime_cache/901d0001",
}


def test_golden_v1_1_is_unchanged_and_reads() -> None:
    assert container.digest((GOLDEN / "mlp.rtxpack").read_bytes()) == GOLDEN_DIGEST, (
        "tests/golden/v1.1/mlp.rtxpack changed; see tests/golden/README.md"
    )
    with rtxpack.open(GOLDEN / "mlp.rtxpack") as b:
        assert b.format_version == "1.1"
        m = b.manifest
        assert dict(m.metadata) == {"team": "vision", "golden": "format 1.1"}
        assert [c.id for c in m.caches] == ["901d0001"]
        assert sorted(s.kind for s in m.sections if s.kind == "signature") == ["signature"] * 2
        b.verify()


def test_golden_v1_1_signatures_verify_with_the_committed_keys() -> None:
    policy = TrustPolicy(
        engines=[GOLDEN / "builder.pub"], caches=[GOLDEN / "prewarm.pub"], require="all"
    )
    bf = container.open_bundle_file(GOLDEN / "mlp.rtxpack")
    try:
        report = trust_report(bf, policy)
    finally:
        bf.close()
    assert report.ok and not report.dropped
    assert set(report.parts) == PARTS
    assert all(report.trusted_by(p) for p in PARTS)
    # ...and so says the verifier written from docs/signing.md alone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "signing"))
    import independent_verifier

    theirs = independent_verifier.trusted_parts(
        GOLDEN / "mlp.rtxpack",
        {
            "engines": [(GOLDEN / "builder.pub").read_bytes()],
            "caches": [(GOLDEN / "prewarm.pub").read_bytes()],
        },
    )
    assert set(theirs) == PARTS and all(theirs.values())


def test_golden_v1_0_migrates_to_1_1_and_can_then_be_signed(tmp_path: Path) -> None:
    from rtxpack._signing import PrivateKey
    from rtxpack._signing.bundle import sign

    out = rtxpack.migrate(GOLDEN.parent / "v1.0" / "mlp.rtxpack", tmp_path / "m.rtxpack")
    key = PrivateKey.generate()
    sign(out, key)
    bf = container.open_bundle_file(out)
    try:
        assert bf.version == (1, 1)
        assert trust_report(bf, TrustPolicy(engines=[key.public_key])).ok
    finally:
        bf.close()
