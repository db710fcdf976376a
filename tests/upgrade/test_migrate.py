"""Format migration, the golden bundles, and rebuilding engines from their ONNX source."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import blake3
import msgpack
import pytest
import tensorrt_rtx

import rtxpack
from rtxpack._build.header import sniff_engine_header
from rtxpack._exceptions import CompatibilityError, UnsupportedVersionError
from rtxpack._facts import same_release
from rtxpack._format import container, migrations
from rtxpack._format.manifest import CacheInfo, EngineInfo, Environment
from rtxpack._samples import run_samples
from rtxpack._upgrade import migrate, rebuild
from rtxpack.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_V1_0 = GOLDEN / "v1.0" / "mlp.rtxpack"
GOLDEN_V1_0_DIGEST = "blake3:61a0ba1139097c6c12f1a648fb7575dd0ba34e84206acd4383a973cec1f0a768"
GOLDEN_V1_1 = GOLDEN / "v1.1" / "models.rtxpack"
GOLDEN_V1_1_DIGEST = "blake3:b032b2131f33573eba3b1f4fa265e7fc9647a465a8d5db2b4191bdcaa3b3f4c4"
FAKE_CACHE = b"RTXPACK-GOLDEN-FAKE-RUNTIME-CACHE\x00" + bytes(range(256)) * 4
ENV = Environment("1.6.0.0", "NVIDIA GeForce RTX 4090", "8.9", "580.65.06", "linux")


def _rewrite(
    src_path: Path,
    dst: Path,
    *,
    engine: Callable[[EngineInfo], EngineInfo] = lambda e: e,
    caches: tuple[str, ...] = (),
    version: tuple[int, int] = container.FORMAT_VERSION,
    extra: dict[str, object] | None = None,
) -> Path:
    """Copy a bundle, changing its engine records, adding a fake cache per name in ``caches``."""
    src = container.BundleFile(src_path)
    m = src.manifest
    with container.atomic_output(dst) as f:
        w = container.BundleWriter(f)
        for s in m.sections:
            w.copy_section(src, s)
        new_caches = list(m.caches)
        for i, name in enumerate(caches):
            idx = w.add_bytes("runtime_cache", name, FAKE_CACHE + name.encode())
            new_caches.append(CacheInfo(f"c{i}{name}", name, idx, ENV, "2026-01-01T00:00:00Z"))
        w.finish(
            replace(
                m,
                sections=tuple(w.sections),
                engines=tuple(engine(e) for e in m.engines),
                caches=tuple(new_caches),
                extra=extra if extra is not None else m.extra,
            ),
            version=version,
        )
    src.close()
    return dst


def _old(e: EngineInfo) -> EngineInfo:
    # The manifest claims another release (the engine bytes are the real 1.7.1 ones): rebuild
    # decides from the manifest, which is what every reader trusts.
    return replace(e, trt_version="1.6.0.0")


# --- golden bundles ------------------------------------------------------------------------------


def test_golden_v1_0_is_unchanged_and_reads_forever() -> None:
    assert container.digest(GOLDEN_V1_0.read_bytes()) == GOLDEN_V1_0_DIGEST, (
        "tests/golden/v1.0/mlp.rtxpack changed; golden bundles must never change"
    )
    with rtxpack.open(GOLDEN_V1_0) as b:
        assert b.format_version == "1.0"
        m = b.manifest
        assert m.rtxpack_version == "0.1.0"
        (e,) = m.engines
        assert (e.name, e.trt_version, e.compute_capabilities) == ("main", "1.7.1.116", ("8.9",))
        assert e.platform == "linux_x86_64" and not e.hardware_portable
        assert [(t.name, t.dtype, t.shape) for t in e.inputs] == [("x", "float32", (-1, 16))]
        assert [(t.name, t.dtype, t.shape) for t in e.outputs] == [("y", "float32", (-1, 8))]
        assert e.profiles[0]["x"].to_dict() == {"min": [1, 16], "opt": [4, 16], "max": [8, 16]}
        assert e.strategy.to_dict() == {
            "dynamic_shapes_kernel_specialization_strategy": "eager",
            "cuda_graph_strategy": "whole_graph_capture",
            "execution_context_allocation_strategy": "on_profile_change",
            "weight_streaming_budget": None,
        }
        assert dict(m.metadata) == {"team": "vision", "golden": "format 1.0"}
        assert b.read_file("labels.txt") == b"cat\ndog\n"
        (c,) = m.caches
        assert (c.id, c.engine, c.environment.gpu_name) == ("901d0001", "main", ENV.gpu_name)
        assert b.read_cache("901d0001") == FAKE_CACHE
        src = b.read_source()
        assert src is not None and container.digest(src) == e.source_digest
        samples = b.read_samples()
        assert samples is not None and samples["inputs"]["x"].shape == (3, 16)
        assert samples["outputs"]["y"].shape == (3, 8)
        b.verify()  # every section digest
        assert bytes(b.read_engine()[:4]) == b"vtrt"
        assert m.migrations == ()


def test_migrate_golden_keeps_every_section_byte_for_byte(tmp_path: Path) -> None:
    out = migrate.migrate(GOLDEN_V1_0, tmp_path / "new.rtxpack")
    with rtxpack.open(GOLDEN_V1_0) as old, rtxpack.open(out) as new:
        assert new.format_version == "1.1"
        assert bytes(new.read_engine()) == bytes(old.read_engine())
        assert [s.digest for s in new.manifest.sections] == [
            s.digest for s in old.manifest.sections
        ]
        assert new.read_cache("901d0001") == FAKE_CACHE
        assert new.manifest.engines == old.manifest.engines
        assert new.manifest.metadata == old.manifest.metadata
        (mig,) = new.manifest.migrations
        assert (mig.from_version, mig.to_version) == ("1.0", "1.1")
        assert mig.rtxpack_version == rtxpack.__version__
        new.verify()
    assert container.digest(GOLDEN_V1_0.read_bytes()) == GOLDEN_V1_0_DIGEST


# --- versions ------------------------------------------------------------------------------------


def test_newer_minor_opens_but_is_not_rewritten(tmp_path: Path) -> None:
    future = {"signatures": [{"key": "ed25519:abc", "sig": "00"}]}
    path = _rewrite(GOLDEN_V1_0, tmp_path / "v19.rtxpack", version=(1, 9), extra=future)
    with rtxpack.open(path) as b:
        assert b.format_version == "1.9"
        assert b.manifest.extra == future
        b.verify()
    # Rewriting it could renumber sections its new fields point at: refused, naming both.
    out = tmp_path / "out.rtxpack"
    env = rtxpack.Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
    for rewrite in (
        lambda: migrate.migrate(path, out),
        lambda: rebuild.rebuild(path, out),
        lambda: rtxpack.add_cache(path, b"cache", env, output=out),
    ):
        with pytest.raises(UnsupportedVersionError, match=r"1\.9.*1\.1.*upgrade rtxpack"):
            rewrite()
    assert not out.exists()


def test_newer_major_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = _rewrite(GOLDEN_V1_0, tmp_path / "v2.rtxpack", version=(2, 0))
    for action in (lambda: rtxpack.open(path), lambda: migrate.migrate(path, tmp_path / "o")):
        with pytest.raises(UnsupportedVersionError) as err:
            action()
        assert "2.0" in str(err.value) and "1.1" in str(err.value)
        assert "upgrade rtxpack" in str(err.value)
    assert not (tmp_path / "o").exists()


def _write_v0_9(src: Path, dst: Path) -> Path:
    f = container.BundleFile(src)
    raw = dict(f.raw_manifest)
    off = f.header.manifest_offset
    f.close()
    raw["models"] = raw.pop("engines")
    blob = msgpack.packb(raw, use_bin_type=True)
    body = bytearray(src.read_bytes()[:off])

    header = struct.pack(
        "<8sHHIQQ32s", container.MAGIC, 0, 9, 0, off, len(blob), blake3.blake3(blob).digest()
    )
    body[: len(header)] = header
    dst.write_bytes(bytes(body) + blob)
    return dst


def test_a_registered_step_carries_an_older_format_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _write_v0_9(GOLDEN_V1_0, tmp_path / "v09.rtxpack")
    with pytest.raises(UnsupportedVersionError, match=r"0\.9"):
        migrate.migrate(old, tmp_path / "no.rtxpack")

    def rename(raw: dict[str, object]) -> dict[str, object]:
        raw = dict(raw)
        raw["engines"] = raw.pop("models")
        return raw

    monkeypatch.setitem(migrations.STEPS, (0, 9), migrations.Step(target=(1, 0), manifest=rename))
    with rtxpack.open(old) as b:  # the reader itself applies the registered steps
        assert b.format_version == "0.9" and b.manifest.engine().name == "main"
    out = migrate.migrate(old, tmp_path / "new.rtxpack")
    with rtxpack.open(out) as b, rtxpack.open(GOLDEN_V1_0) as g:
        assert b.format_version == "1.1"
        assert bytes(b.read_engine()) == bytes(g.read_engine())
        assert b.manifest.migrations[-1].from_version == "0.9"
        assert "models" not in b.manifest.extra
        b.verify()


# --- rebuild -------------------------------------------------------------------------------------


def test_rebuild_old_release_from_source(tmp_path: Path, onnx_bundle: Path) -> None:
    old = _rewrite(onnx_bundle, tmp_path / "old.rtxpack", engine=_old, caches=("main",))
    lines: list[str] = []
    out = rebuild.rebuild(old, tmp_path / "new.rtxpack", progress=lines.append)
    with rtxpack.open(out) as b, rtxpack.open(old) as o:
        e, oe = b.manifest.engine(), o.manifest.engine()
        assert e.trt_version == tensorrt_rtx.__version__
        header = sniff_engine_header(b.read_engine())
        assert header is not None and same_release(header.trt_version, tensorrt_rtx.__version__)
        assert b.manifest.caches == ()  # the old engine's cache no longer applies
        assert b.read_source() == o.read_source()
        assert (e.strategy, e.profiles, e.source_digest) == (
            oe.strategy,
            oe.profiles,
            oe.source_digest,
        )
        assert b.manifest.metadata == o.manifest.metadata == {"team": "vision"}
        smp = b.read_samples()
        assert smp is not None and set(smp["inputs"]) == {"x"}
        assert e.hardware_portable == oe.hardware_portable
        b.verify()
    text = "\n".join(lines)
    assert "1.6.0.0" in text and "dropped runtime cache c0main" in text
    assert "rebuilt with TensorRT-RTX" in text


def test_rebuild_keeps_untouched_engines_and_their_caches(tmp_path: Path, onnx_mlp: Path) -> None:
    two = tmp_path / "two.rtxpack"
    rtxpack.save(
        {
            "a": rtxpack.EngineSpec(onnx_mlp, shapes={"x": ((1, 16), (2, 16), (4, 16))}),
            "b": rtxpack.EngineSpec(onnx_mlp, shapes={"x": ((1, 16), (2, 16), (4, 16))}),
        },
        two,
        files={"notes.txt": b"hi"},
    )
    old = _rewrite(
        two,
        tmp_path / "old.rtxpack",
        engine=lambda e: _old(e) if e.name == "a" else e,
        caches=("a", "b"),
    )
    out = rebuild.rebuild(old, tmp_path / "new.rtxpack")
    with rtxpack.open(out) as n, rtxpack.open(old) as o:
        assert [c.engine for c in n.manifest.caches] == ["b"]
        assert n.read_cache("c1b") == FAKE_CACHE + b"b"
        assert bytes(n.read_engine("b")) == bytes(o.read_engine("b"))
        assert n.manifest.engine("a").trt_version == tensorrt_rtx.__version__
        assert n.read_file("notes.txt") == b"hi"
        n.verify()


def test_rebuild_without_source_says_what_to_do(tmp_path: Path, engine_bundle: Path) -> None:
    old = _rewrite(engine_bundle, tmp_path / "old.rtxpack", engine=_old)
    with pytest.raises(CompatibilityError) as err:
        rebuild.rebuild(old, tmp_path / "new.rtxpack")
    msg = str(err.value)
    assert "does not carry its ONNX source" in msg and "rtxpack build" in msg and "1.6.0.0" in msg
    assert not (tmp_path / "new.rtxpack").exists()


def test_nothing_to_rebuild_writes_an_unchanged_copy(tmp_path: Path, onnx_bundle: Path) -> None:
    lines: list[str] = []
    out = rebuild.rebuild(onnx_bundle, tmp_path / "same.rtxpack", progress=lines.append)
    assert any("nothing to rebuild" in x for x in lines)
    with rtxpack.open(out) as b, rtxpack.open(onnx_bundle) as o:
        assert bytes(b.read_engine()) == bytes(o.read_engine())


def test_rebuild_for_a_missing_compute_capability(tmp_path: Path) -> None:
    out = rebuild.rebuild(GOLDEN_V1_0, tmp_path / "cc.rtxpack", compute_capabilities=["8.6"])
    with rtxpack.open(out) as b:
        e = b.manifest.engine()
        assert e.compute_capabilities == ("8.6",)
        header = sniff_engine_header(b.read_engine())
        assert header is not None and header.compute_capabilities == ("8.6",)
        assert b.manifest.caches == ()  # the golden cache belonged to the 8.9 engine
        assert b.read_file("labels.txt") == b"cat\ndog\n"


def test_rebuild_to_cache_reuses_a_previous_rebuild(
    tmp_path: Path, onnx_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTXPACK_CACHE_DIR", str(tmp_path / "cache"))
    assert rebuild.rebuild_to_cache(onnx_bundle) == onnx_bundle  # nothing to rebuild
    old = _rewrite(onnx_bundle, tmp_path / "old.rtxpack", engine=_old)
    first = rebuild.rebuild_to_cache(old)
    assert first.parent == tmp_path / "cache" / "rebuilt"
    assert tensorrt_rtx.__version__ in first.name
    stamp = first.stat().st_mtime_ns
    assert rebuild.rebuild_to_cache(old) == first
    assert first.stat().st_mtime_ns == stamp
    with rtxpack.open(first) as b:
        assert b.manifest.engine().trt_version == tensorrt_rtx.__version__


def test_rebuilds_and_runtime_caches_share_one_cache_root(
    tmp_path: Path, onnx_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in issue 8: rebuilds used platformdirs.user_cache_dir("rtxpack") and runtime caches
    user_cache_dir("rtxpack", appauthor=False): two folders on Windows. Now one root."""
    import platformdirs

    from rtxpack._caches.local import local_cache_path
    from rtxpack._checks.target import Target

    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []

    def user_cache_dir(*args: object, **kwargs: object) -> str:
        calls.append((args, kwargs))
        # Windows spells the folder differently when appauthor is not False.
        return str(tmp_path / ("plat" if kwargs.get("appauthor") is False else "other"))

    monkeypatch.delenv("RTXPACK_CACHE_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", user_cache_dir)
    old = _rewrite(onnx_bundle, tmp_path / "old.rtxpack", engine=_old)
    rebuilt = rebuild.rebuild_to_cache(old)
    runtime_cache = local_cache_path("blake3:" + "0" * 64, Target(trt_version="1.7.1"))
    assert rebuilt.parent == tmp_path / "plat" / "rebuilt"
    assert runtime_cache.parent == tmp_path / "plat" / "runtime-caches"
    assert all(kwargs.get("appauthor") is False for _, kwargs in calls)


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_migrate_and_rebuild(
    tmp_path: Path, onnx_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", str(GOLDEN_V1_0), "-o", str(tmp_path / "m.rtxpack")]) == 0
    assert "from format 1.0 to 1.1" in capsys.readouterr().err
    old = _rewrite(onnx_bundle, tmp_path / "old.rtxpack", engine=_old, caches=("main",))
    assert main(["rebuild", str(old), "-o", str(tmp_path / "r.rtxpack")]) == 0
    err = capsys.readouterr().err
    assert "rebuilding from its ONNX source" in err and "dropped runtime cache" in err
    shutil.copy(old, tmp_path / "bad.rtxpack")
    assert main(["rebuild", str(tmp_path / "bad.rtxpack"), "-o", "x", "--engine", "nope"]) == 1
    assert "no engine named 'nope'" in capsys.readouterr().err


def test_check_and_rebuild_agree_on_a_gpu_newer_than_an_engines_targets(
    tmp_path: Path, onnx_bundle: Path
) -> None:
    """Found in review: check said needs_rebuild for a fixed-target engine on a GPU newer than
    any target, but rebuild found nothing to do. Its hint is now --portable, which does it."""
    import dataclasses

    from rtxpack import Target, check
    from rtxpack._checks.machine import local_target

    fixed = _rewrite(
        onnx_bundle,
        tmp_path / "fixed.rtxpack",
        engine=lambda e: dataclasses.replace(
            e, compute_capabilities=("8.6",), hardware_portable=False
        ),
    )
    newer_gpu = dataclasses.replace(
        Target(**{**local_target().to_dict(), "compute_capability": "13.0"}),
        driver_version="580.65",
        gpu_name="NVIDIA GeForce RTX 6090",
    )
    report = check(fixed, newer_gpu)
    assert report.verdict("main").status == "needs_rebuild"
    assert "--portable" in report.errors[0].message
    out = rebuild.rebuild(fixed, tmp_path / "new.rtxpack", portable=True)
    with rtxpack.open(out) as b:
        assert b.manifest.engine().hardware_portable
    assert check(out, newer_gpu).verdict("main").status == "loads"


def test_golden_v1_1_is_unchanged_and_reads_forever(tmp_path: Path) -> None:
    assert container.digest(GOLDEN_V1_1.read_bytes()) == GOLDEN_V1_1_DIGEST, (
        "tests/golden/v1.1/models.rtxpack changed; golden bundles must never change"
    )
    with rtxpack.open(GOLDEN_V1_1) as b:
        assert b.format_version == "1.1"
        b.verify()
        main, packed = b.manifest.engines
        assert main.platform == "windows_x86_64" and packed.platform == "unknown"
        assert main.output_tree == {"dict": [["sum", 0], ["parts", {"tuple": [1, 2]}]]}
        assert [t.name for t in main.outputs] == ["sum", "parts.0", "parts.1"]
        assert main.equal_dims == ((("x", 0), ("y", 0)),)
        assert main.build_options == rtxpack.BuildOptions(
            weight_streaming=True, tiling_optimization_level="fast", max_aux_streams=0
        )
        assert packed.build_options is None
        assert main.strategy.weight_streaming_budget == "auto"
        (data,) = main.source_data
        assert b.manifest.sections[data].kind == "source_data"
        assert b.manifest.sections[data].name == "model.onnx.data"
    # ... and its source runs from the bundle alone (the fallback materializes it)
    run = run_samples(GOLDEN_V1_1, engine="main", device="cpu")
    assert run.ok and sorted(o.name for o in run.outputs) == ["parts.0", "parts.1", "sum"]


def test_migrating_a_current_bundle_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle already at the current version is not migrated: no '1.1 -> 1.1' record."""
    out = tmp_path / "same.rtxpack"
    assert main(["migrate", str(GOLDEN_V1_1), "-o", str(out)]) == 0
    assert "already at the current format 1.1: nothing to migrate" in capsys.readouterr().err
    with rtxpack.open(GOLDEN_V1_1) as before, rtxpack.open(out) as after:
        assert after.manifest.migrations == before.manifest.migrations
    rtxpack.migrate(out, out)  # in place, twice: still nothing recorded
    with rtxpack.open(out) as again:
        assert again.manifest.migrations == ()
