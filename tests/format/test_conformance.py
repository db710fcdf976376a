"""The conformance suite (tests/conformance/, written by scripts/make_conformance.py from the spec
alone): the reference reader reaches every case's verdict, at the stated stage, with the stated
error class, and for the stated rule (each rule's message names what it checks)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import blake3
import pytest

import rtxpack

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "conformance"
INDEX = json.loads((SUITE / "index.json").read_text())
CASES: list[dict[str, Any]] = INDEX["cases"]

ERRORS: dict[str, type[rtxpack.RtxpackError]] = {
    "not-a-bundle": rtxpack.NotABundleError,
    "unsupported-version": rtxpack.UnsupportedVersionError,
    "damaged": rtxpack.DamagedBundleError,
    "integrity": rtxpack.IntegrityError,
}

#: What the reference reader's message says for each rule (so a case fails for its own reason,
#: not for an earlier, unrelated check).
SAYS: dict[str, str | tuple[str, ...]] = {
    "header.magic": "not an rtxpack bundle",
    "header.size": "shorter than the 64-byte header",
    "header.major": "uses bundle format",
    "header.bounds": "the header",
    "manifest.digest": "does not match the digest in the header",
    "manifest.msgpack": "not valid msgpack",
    "manifest.types": "expected",
    "manifest.duplicate-keys": "more than once",
    "manifest.depth": "levels",
    "manifest.nil": "expected",
    "manifest.integers": "an integer in",
    "names": "printable",
    "strings": "code points",
    "limits": ("at most", "an integer in [0, 68719476736]", "an integer in [-1, 1099511627776]"),
    "section.bounds": "claims bytes",
    "section.overlap": "overlaps section",
    "section.stored-size": "is stored but claims",
    "section.zstd-ratio": "more than zstd can produce",
    "section.zstd": "zstd frame",
    "section.codec": "stored, zstd",
    "section.size": "decodes to",
    "section.digest": "digest",
    "engine.profiles": "profile",
    "engine.shapes": "shape",
    "engine.strategy": "strategy",
    "engine.digest": "source_digest",
    "cache.environment": "environment",
    "cache.shapes": "shapes",
    "references": "",
}


#: The reference reader's exact message for each invalid case (the path shown as <bundle>): what
#: a user reads says what was found, what was expected and what to do. After a deliberate change
#: of wording, rewrite it with ``python tests/format/test_conformance.py`` and review the diff.
MESSAGES_FILE = Path(__file__).with_name("conformance_messages.json")
MESSAGES: dict[str, str] = json.loads(MESSAGES_FILE.read_text())


def _read_all(path: Path) -> None:
    with rtxpack.open(path) as b:
        b.verify()
        for i in range(len(b.manifest.sections)):
            b.read_section(i)


def _message(err: BaseException, path: Path) -> str:
    return str(err).replace(str(path), "<bundle>")  # the file name must not match a fragment


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    path = SUITE / case["file"]
    assert blake3.blake3(path.read_bytes()).hexdigest() == case["blake3"], "suite file changed"
    if case["verdict"] == "valid":
        _read_all(path)
        return
    error = ERRORS[case["error"]]
    if case["stage"] == "open":
        with pytest.raises(rtxpack.RtxpackError) as info:
            rtxpack.open(path).close()
    else:
        # opening must succeed: the damage is in the sections; reading the bad section whole
        # (read_section, not only the streaming verify) finds it too
        with rtxpack.open(path) as b:
            with pytest.raises(rtxpack.RtxpackError) as info:
                b.verify()
            failures = []
            for i in range(len(b.manifest.sections)):
                try:
                    b.read_section(i)
                except rtxpack.RtxpackError as exc:
                    failures.append(exc)
            assert [type(e) for e in failures] == [type(info.value)], failures
    assert type(info.value) is error, f"{case['file']}: got {info.value!r}"
    says = SAYS[case["rule"]]
    message = _message(info.value, path)
    assert any(s in message for s in ((says,) if isinstance(says, str) else says)), message
    assert message == MESSAGES[case["file"]]


def test_the_suite_is_what_the_generator_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("mc", ROOT / "scripts" / "make_conformance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    assert json.loads((tmp_path / "index.json").read_text()) == INDEX
    for case in CASES:
        assert (tmp_path / case["file"]).read_bytes() == (SUITE / case["file"]).read_bytes()


def test_every_rule_has_valid_and_invalid_cases_and_is_in_the_spec() -> None:
    spec = (ROOT / "docs" / "format.md").read_text()
    tagged = set(re.findall(r"\[rule ([a-z.-]+)\]", spec))
    used = {c["rule"] for c in CASES}
    assert used <= tagged, f"rules the spec does not name: {sorted(used - tagged)}"
    assert tagged <= used | {"layout"}, f"spec rules without a case: {sorted(tagged - used)}"
    assert {c["verdict"] for c in CASES} == {"valid", "invalid"}
    assert len(CASES) >= 100


def _reference_messages() -> dict[str, str]:
    out = {}
    for case in CASES:
        if case["verdict"] == "invalid":
            path = SUITE / case["file"]
            try:
                with rtxpack.open(path) as b:
                    b.verify()
            except rtxpack.RtxpackError as exc:
                out[case["file"]] = _message(exc, path)
    return out


def test_every_invalid_case_has_its_message() -> None:
    assert set(MESSAGES) == {c["file"] for c in CASES if c["verdict"] == "invalid"}


if __name__ == "__main__":
    MESSAGES_FILE.write_text(json.dumps(_reference_messages(), indent=1, ensure_ascii=False) + "\n")
