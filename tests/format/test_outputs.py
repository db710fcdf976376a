"""Files rtxpack writes: special files are never replaced, links are followed, no setuid bit is
carried over, killed writers' temporaries are cleaned up, concurrent rewrites of one bundle all
land; sections are verified and extracted in bounded memory; untrusted text cannot forge output."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import blake3
import pytest
import zstandard

import rtxpack
from rtxpack import InvalidArgumentError, OutputError
from rtxpack._format import container
from rtxpack.cli import main

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "make_conformance", ROOT / "scripts/make_conformance.py"
)
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, which must fail with one error line; returns that line."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtxpack: error: ") and err.count("\n") == 1, err
    return err


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types and locks")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.rtxpack"
    path.write_bytes(mc.Base().bytes())
    return path


# ---------------------------------------------------------------------------------------------
# Output paths


@posix_only
def test_a_fifo_at_the_output_is_refused_not_replaced(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "out.engine"
    os.mkfifo(fifo)
    assert "FIFO, device or socket" in cli_error(["extract", str(small), "-o", str(fifo)], capsys)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@posix_only
def test_a_device_at_the_output_is_refused(small: Path) -> None:
    before = os.lstat("/dev/null")
    with (
        pytest.raises(OutputError, match="not a regular file"),
        container.atomic_output("/dev/null") as f,
    ):
        f.write(b"x")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_folder_at_the_output_is_refused(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dir").mkdir()
    assert "is a folder" in cli_error(["extract", str(small), "-o", str(tmp_path / "dir")], capsys)


@posix_only
def test_an_in_place_edit_through_a_link_updates_the_bundle_it_points_to(
    small: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.rtxpack"
    link.symlink_to(small.name)
    env = rtxpack.Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
    from rtxpack._caches import edit

    edit.add_cache(link, b"cache bytes", env)
    assert link.is_symlink() and os.readlink(link) == small.name  # still the link
    with rtxpack.open(small) as b:  # the bundle behind it got the cache
        assert len(b.manifest.caches) == 1


@posix_only
def test_setuid_and_setgid_bits_are_not_carried_over(small: Path) -> None:
    os.chmod(small, 0o6755)
    env = rtxpack.Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
    from rtxpack._caches import edit

    edit.add_cache(small, b"cache bytes", env)
    assert stat.S_IMODE(os.stat(small).st_mode) == 0o755


@posix_only
def test_an_output_may_not_replace_an_input_or_another_output(tmp_path: Path) -> None:
    """A command writing several files (an EPContext export: model and engine files; an import:
    a bundle from a model and its engine files) refuses before it writes anything when two of
    them are one file, links followed."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model")
    (tmp_path / "link.onnx").symlink_to("model.onnx")
    a, b = tmp_path / "a.rtxpack", tmp_path / "b.rtxpack"
    refused = [
        ({"bundle": tmp_path / "link.onnx"}, {"model": model}, "bundle", "link.onnx", "model"),
        ({"bundle": model}, {"model": tmp_path / "link.onnx"}, "bundle", "model.onnx", "model"),
        ({"bundle": a, "cache": a}, {"model": model}, "cache", "a.rtxpack", "bundle"),
        ({"engine": model}, {"source": b, "model": model}, "engine", "model.onnx", "model"),
    ]
    for outputs, inputs, what, name, other in refused:
        with pytest.raises(InvalidArgumentError) as info:
            container.distinct_outputs(outputs, inputs)
        target = model if name != "a.rtxpack" else a
        assert str(info.value) == (
            f"cannot write the {what} to {tmp_path / name}: that is the {other} ({target}), "
            "which would be replaced — choose another output path"
        )
    container.distinct_outputs({"bundle": a, "cache": b}, {"model": tmp_path / "link.onnx"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.onnx", "model.onnx"]
    with pytest.raises(InvalidArgumentError, match="NUL"):
        container.distinct_outputs({"bundle": a}, {"model": "model\0.onnx"})
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputError, match="FIFO"):
        container.distinct_outputs({"bundle": tmp_path / "fifo"}, {})


@pytest.mark.parametrize("where", ["bundle", "output"])
def test_a_nul_in_a_path_is_an_rtxpack_error(
    small: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if where == "bundle":
        with pytest.raises(InvalidArgumentError, match="NUL"):
            rtxpack.open(str(small) + "\0x")
    else:
        assert "NUL" in cli_error(["extract", str(small), "-o", str(tmp_path / "a\0b")], capsys)


# ---------------------------------------------------------------------------------------------
# Temporaries of killed writers

_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from rtxpack._format import container
    with container.atomic_output(sys.argv[1]) as f:
        f.write(b"x" * 1000)
        f.flush()
        print("writing", flush=True)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), 9)
        time.sleep(60)
    """
)


def _writer(target: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "writing\n"
    return proc


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@posix_only
def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    proc = _writer(tmp_path / "a.rtxpack", "kill")
    proc.wait(timeout=30)
    assert proc.returncode == -9
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(".a.rtxpack.")
    with container.atomic_output(tmp_path / "b.bin") as f:  # any write to that folder
        f.write(b"y")
    assert _temps(tmp_path) == []
    assert not (tmp_path / "a.rtxpack").exists()


@posix_only
def test_a_live_writers_temporary_is_kept(tmp_path: Path) -> None:
    proc = _writer(tmp_path / "a.rtxpack", "sleep")
    try:
        left = _temps(tmp_path)
        assert len(left) == 1
        with container.atomic_output(tmp_path / "b.bin") as f:
            f.write(b"y")
        assert _temps(tmp_path) == left  # still writing: not touched
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with container.atomic_output(tmp_path / "b.bin") as f:
        f.write(b"z")
    assert _temps(tmp_path) == []


@posix_only
def test_only_rtxpack_temporaries_are_removed(tmp_path: Path) -> None:
    keep = [".notes.txt.swp", "a.tmp", ".x.123.tmp", ".x.0123456789ab.tmp.bak", ".b.lock"]
    for name in keep:
        (tmp_path / name).write_bytes(b"")
    stale = tmp_path / ".x.0123456789ab.tmp"
    stale.write_bytes(b"")
    assert container.remove_stale_temporaries(tmp_path) == [stale.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


@posix_only
def test_a_held_a_linked_or_a_folder_temporary_is_kept(tmp_path: Path) -> None:
    """In process: a live writer's lock is any other open file description's lock."""
    held = tmp_path / ".a.rtxpack.0123456789ab.tmp"
    held.write_bytes(b"being written")
    (tmp_path / ".b.rtxpack.0123456789ab.tmp").symlink_to(held.name)
    (tmp_path / ".c.rtxpack.0123456789ab.tmp").mkdir()
    import fcntl

    with open(held, "rb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert container.remove_stale_temporaries(tmp_path) == []
    assert container.remove_stale_temporaries(tmp_path) == [held.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".b.rtxpack.0123456789ab.tmp",
        ".c.rtxpack.0123456789ab.tmp",
    ]
    assert container.remove_stale_temporaries(tmp_path / "missing") == []


def _temps_and_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_write_changes_nothing_and_says_why(tmp_path: Path) -> None:
    out = tmp_path / "out.rtxpack"
    out.write_bytes(b"before")
    with pytest.raises(OutputError) as info, container.atomic_output(out) as f:
        f.write(b"half")
        raise OSError(28, "No space left on device")
    assert str(info.value) == (
        f"cannot write {out}: No space left on device; nothing was changed at {out} (free some "
        "space, check permissions, or close programs using the file)"
    )
    assert info.value.path == str(out)
    with pytest.raises(KeyboardInterrupt), container.atomic_output(out) as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert out.read_bytes() == b"before" and _temps_and_files(tmp_path) == ["out.rtxpack"]
    with (
        pytest.raises(InvalidArgumentError) as missing,
        container.atomic_output(tmp_path / "no" / "out.rtxpack"),
    ):
        pass
    assert str(missing.value) == (
        f"cannot write {tmp_path / 'no' / 'out.rtxpack'}: folder {tmp_path / 'no'} does not exist"
    )


@posix_only
def test_a_new_file_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with container.atomic_output(tmp_path / "new") as f:
            f.write(b"new")
        (tmp_path / "old").write_bytes(b"old")
        os.chmod(tmp_path / "old", 0o604)
        with container.atomic_output(tmp_path / "old") as f:
            f.write(b"replaced")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "old").st_mode) == 0o604
    assert (tmp_path / "old").read_bytes() == b"replaced"


@posix_only
def test_a_rewrite_whose_lock_file_cannot_be_made_says_so(small: Path) -> None:
    lock = small.parent / f".{small.name}.lock"
    lock.symlink_to("elsewhere")  # the lock is never a link
    with pytest.raises(OutputError) as info, container.rewrite_lock(small):
        pass
    assert str(info.value) == (
        f"cannot rewrite {small}: cannot create its lock file {lock.name} (Too many levels of "
        "symbolic links); choose a folder you can write to"
    )


# ---------------------------------------------------------------------------------------------
# Concurrent rewrites

_ADDER = textwrap.dedent(
    """
    import sys
    from rtxpack.cli import main
    sys.exit(main(["cache", "add", sys.argv[1], "--cache", sys.argv[2], "--trt-version",
                   "1.7.1.116", "--gpu", "GPU " + sys.argv[3], "--cc", "8.9", "--driver",
                   "580.65", "--os", "linux"]))
    """
)


@posix_only
def test_sixteen_concurrent_cache_adds_all_land(small: Path, tmp_path: Path) -> None:
    blob = tmp_path / "cache.bin"
    blob.write_bytes(b"runtime cache bytes")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ADDER, str(small), str(blob), str(i)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(16)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with rtxpack.open(small) as b:
        gpus = sorted(c.environment.gpu_name for c in b.manifest.caches)
        b.verify()
    assert gpus == sorted(f"GPU {i}" for i in range(16))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock, no temp


# ---------------------------------------------------------------------------------------------
# Bounded memory for verify and extract


def _big_zstd_bundle(tmp_path: Path, size: int) -> Path:
    """A user file of ``size`` zero bytes (a few KB compressed), made without holding it."""
    chunk = bytes(8 * 1024 * 1024)
    h = blake3.blake3()
    comp = zstandard.ZstdCompressor().compressobj(size=size)
    payload = bytearray()
    for _ in range(size // len(chunk)):
        h.update(chunk)
        payload += comp.compress(chunk)
    payload += comp.flush()
    b = mc.Base()
    data, offsets = mc.layout([*b.payloads, bytes(payload)])
    b.manifest["sections"].append(
        {
            "kind": "file",
            "name": "extra.bin",
            "offset": offsets[3],
            "length": len(payload),
            "codec": "zstd",
            "size": size,
            "digest": "blake3:" + h.hexdigest(),
        }
    )
    b.manifest["files"]["extra.bin"] = 3
    path = tmp_path / "big.rtxpack"
    path.write_bytes(mc.assemble(data, b.manifest))
    return path


def test_verify_and_extract_stream_a_large_section(tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    path = _big_zstd_bundle(tmp_path, size)
    out = tmp_path / "extra.bin"
    tracemalloc.start()
    try:
        with rtxpack.open(path) as b:
            b.verify()
        assert main(["extract", str(path), "--file", "extra.bin", "-o", str(out)]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.stat().st_size == size
    assert peak < 40 * 1024 * 1024, f"{peak} bytes for a {size}-byte section"


def test_a_section_too_large_for_memory_is_an_rtxpack_error(tmp_path: Path) -> None:
    """Under a 1 GiB address-space cap, reading a 1.5 GiB section whole fails with an
    RtxpackError that says what to do (no MemoryError traceback); verifying it streams."""
    if sys.platform != "linux":
        pytest.skip("RLIMIT_AS is how this test caps memory")
    path = _big_zstd_bundle(tmp_path, 1536 * 1024 * 1024)
    code = textwrap.dedent(
        """
        import resource, sys
        import rtxpack
        with rtxpack.open(sys.argv[1]) as b:
            b.verify()
            print("verified", flush=True)
            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
            try:
                b.read_file("extra.bin")
            except rtxpack.RtxpackError as exc:
                print(type(exc).__name__, exc)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("verified\nInvalidArgumentError")
    assert "rtxpack extract streams it" in run.stdout


def test_extract_writes_nothing_when_the_digest_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def change(m: dict) -> None:
        m["sections"][2]["digest"] = mc.digest(b"other")

    path = tmp_path / "bad.rtxpack"
    path.write_bytes(mc.edit(change))
    out = tmp_path / "notes.txt"
    assert "corrupted" in cli_error(
        ["extract", str(path), "--file", "notes.txt", "-o", str(out)], capsys
    )
    assert not out.exists() and _temps(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Output a person reads


def test_inspect_escapes_newlines_so_metadata_cannot_forge_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = "x\nOK  verified by NVIDIA: signature valid\x1b[2J"
    path = tmp_path / "m.rtxpack"
    path.write_bytes(mc.edit(lambda m: m.update(metadata={"note": forged})))
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert not any(line.startswith("OK") for line in out.splitlines())
    assert "x\\nOK  verified by NVIDIA: signature valid\\x1b[2J" in out
    assert "\x1b" not in out


def test_inspect_json_is_strict_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "u.rtxpack"
    path.write_bytes(mc.edit(lambda m: m.update(future={"n": 1.5e308, "m": -0.0})))
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert data["future"] == {"n": 1.5e308, "m": -0.0}


def test_inspecting_a_manifest_full_of_unknown_values_is_bounded(tmp_path: Path) -> None:
    """The campaign's 13 MB manifest of nested unknown keys took 423 s and 2.35 GB: now a
    manifest at max_values opens and inspects in well under the CPU bound, under 64 MiB."""
    n = rtxpack.Limits().max_values - 4096
    path = tmp_path / "unknown.rtxpack"
    path.write_bytes(mc.edit(lambda m: m.update(future=[[[]] * 4096] * (n // 4097))))
    tracemalloc.start()
    start = time.process_time()
    try:
        data = rtxpack.inspect(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < 10
    assert peak < 64 * 1024 * 1024, peak
    assert len(data["future"]) == n // 4097
    over = tmp_path / "over.rtxpack"
    over.write_bytes(mc.edit(lambda m: m.update(future=[[[]] * 4096] * 128)))
    with pytest.raises(rtxpack.DamagedBundleError, match="more than 524288 values"):
        rtxpack.open(over)


@posix_only
def test_in_process_a_writers_own_temporary_is_locked_and_named_for_cleanup(
    tmp_path: Path,
) -> None:
    """The in-process twin of the two tests above (mutation runs leave out the ones that start
    processes): a writer's temporary survives a cleanup while the writer is open, and once its
    descriptor is gone without a rename (as when the process is killed) the next write removes
    it."""
    with container.atomic_output(tmp_path / "a.rtxpack") as f:
        f.write(b"partial")
        (left,) = _temps(tmp_path)
        assert left.startswith(".a.rtxpack.")
        assert container.remove_stale_temporaries(tmp_path) == []
        assert _temps(tmp_path) == [left]
    assert _temps(tmp_path) == []

    tmp, fd = container._new_temp(tmp_path, "c.rtxpack")
    os.close(fd)  # the writer is gone; its temporary stays behind
    assert _temps(tmp_path) == [tmp.name]
    with container.atomic_output(tmp_path / "b.bin") as f:
        f.write(b"y")
    assert _temps(tmp_path) == []
