"""The local runtime-cache file: location, keying, atomic locked writes, and bad files."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path

import pytest

from rtxpack._caches import local
from rtxpack._caches.local import local_cache_path, persist_runtime_cache, read_cache_file
from rtxpack._checks.target import Target
from rtxpack._constants import cache_root
from rtxpack._exceptions import RuntimeCacheWarning

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses fork and SIGKILL")

DIGEST = "blake3:" + "ab" * 32
TARGET = Target("1.7.1.116", "8.9", "580.65", "linux", "NVIDIA GeForce RTX 4090")


def make_blob(writer: int, i: int) -> bytes:
    """A blob that proves its own integrity: a tag, a body derived from it, and its hash."""
    tag = f"{writer}:{i}:".encode()
    body = hashlib.sha256(tag).digest() * (64 + (writer * 50 + i) % 500)
    return tag + body + hashlib.sha256(tag + body).digest()


def blob_is_whole(blob: bytes) -> bool:
    return hashlib.sha256(blob[:-32]).digest() == blob[-32:]


# --- location and keying ----------------------------------------------------------------------


def test_cache_dir_argument_beats_env_var_beats_platform_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RTXPACK_CACHE_DIR", raising=False)
    assert cache_root().name == "rtxpack"
    monkeypatch.setenv("RTXPACK_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert local_cache_path(DIGEST, TARGET).is_relative_to(tmp_path / "env")


def test_file_is_keyed_by_engine_and_every_part_of_the_environment(tmp_path: Path) -> None:
    base = local_cache_path(DIGEST, TARGET, tmp_path)
    assert base == local_cache_path(DIGEST, TARGET, tmp_path)  # stable across calls
    others = [
        local_cache_path("blake3:" + "cd" * 32, TARGET, tmp_path),
        local_cache_path(
            DIGEST, Target("1.7.1.117", "8.9", "580.65", "linux", TARGET.gpu_name), tmp_path
        ),
        local_cache_path(
            DIGEST, Target("1.7.1.116", "8.9", "580.65", "linux", "RTX 4080"), tmp_path
        ),
        local_cache_path(
            DIGEST, Target("1.7.1.116", "8.6", "580.65", "linux", TARGET.gpu_name), tmp_path
        ),
        local_cache_path(
            DIGEST, Target("1.7.1.116", "8.9", "590.10", "linux", TARGET.gpu_name), tmp_path
        ),
        local_cache_path(
            DIGEST, Target("1.7.1.116", "8.9", "580.65", "windows", TARGET.gpu_name), tmp_path
        ),
    ]
    assert len({base, *others}) == 1 + len(others)
    # A driver update within the major keeps the same file (it stays valid for TensorRT-RTX).
    newer = Target("1.7.1.116", "8.9", "580.95", "linux", TARGET.gpu_name)
    assert local_cache_path(DIGEST, newer, tmp_path) == base


def test_a_local_cache_survives_a_driver_update_but_not_a_downgrade(tmp_path: Path) -> None:
    from rtxpack._caches.local import environment_key

    def expect(driver: str) -> dict[str, object]:
        t = Target("1.7.1.116", "8.9", driver, "linux", TARGET.gpu_name)
        return {"engine_digest": DIGEST, "environment": environment_key(t)}

    path = tmp_path / "c.rtxcache"
    assert persist_runtime_cache(path, b"kernels", meta=expect("580.65"))
    assert read_cache_file(path, expect=expect("580.95")) == b"kernels"  # newer driver: loads
    with pytest.warns(RuntimeCacheWarning, match="different environment"):
        assert read_cache_file(path, expect=expect("580.10")) is None  # older: TensorRT-RTX won't


# --- round trip and bad files ---------------------------------------------------------------


def test_persist_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.rtxcache"  # the folder is created
    assert persist_runtime_cache(path, b"kernels" * 100)
    assert read_cache_file(path) == b"kernels" * 100
    assert not list(path.parent.glob("*.tmp"))


def test_missing_file_is_silently_cold(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_cache_file(tmp_path / "none.rtxcache") is None


def _bad_files(good: bytes) -> dict[str, bytes]:
    flipped = bytearray(good)
    flipped[-5] ^= 0xFF
    return {
        "foreign": b"\x7fELF" + os.urandom(200),
        "truncated": good[:-10],
        "header only": good[:20],
        "corrupt payload": bytes(flipped),
        "extra bytes": good + b"junk",
        "empty": b"",
    }


@pytest.mark.parametrize("kind", list(_bad_files(b"x" * 100)))
def test_bad_file_is_ignored_with_warning_then_replaced(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.rtxcache"
    assert persist_runtime_cache(path, b"good" * 50)
    path.write_bytes(_bad_files(path.read_bytes())[kind])
    with pytest.warns(RuntimeCacheWarning, match="ignored"):
        assert read_cache_file(path) is None
    assert persist_runtime_cache(path, b"fresh" * 50)  # replaced on the next persist
    assert read_cache_file(path) == b"fresh" * 50


def test_file_made_for_another_engine_or_environment_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.rtxcache"
    assert persist_runtime_cache(path, b"x" * 64, meta={"engine_digest": "blake3:" + "00" * 32})
    with pytest.warns(RuntimeCacheWarning, match="different engine digest"):
        assert read_cache_file(path, expect={"engine_digest": DIGEST}) is None
    assert read_cache_file(path, expect={"engine_digest": "blake3:" + "00" * 32}) == b"x" * 64


def test_oversized_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.rtxcache"
    assert persist_runtime_cache(path, b"x" * 200_000)
    monkeypatch.setattr(local, "MAX_CACHE_BYTES", 1000)
    with pytest.warns(RuntimeCacheWarning, match="limit"):
        assert read_cache_file(path) is None
    with pytest.warns(RuntimeCacheWarning, match="expected 1 to 1000"):
        assert persist_runtime_cache(path, b"y" * 2000) is False


def test_persist_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.warns(RuntimeCacheWarning, match="not written"):
        assert persist_runtime_cache(blocker / "c.rtxcache", b"data") is False
    with pytest.warns(RuntimeCacheWarning, match="0 bytes"):
        assert persist_runtime_cache(tmp_path / "c.rtxcache", b"") is False


# --- many processes at once -----------------------------------------------------------------


def _writer(path: str, writer: int, count: int, errors: mp.Queue) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for i in range(count):
                if not persist_runtime_cache(path, make_blob(writer, i)):
                    errors.put(f"writer {writer}: persist returned False")
    except BaseException as exc:
        errors.put(f"writer {writer}: {type(exc).__name__}: {exc}")


def _reader(path: str, stop: mp.Event, errors: mp.Queue, reads: mp.Value) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a torn or garbage file would warn
            while not stop.is_set():
                blob = read_cache_file(path)
                if blob is not None:
                    if not blob_is_whole(blob):
                        errors.put("reader saw a blob that is not whole")
                    with reads.get_lock():
                        reads.value += 1
    except BaseException as exc:
        errors.put(f"reader: {type(exc).__name__}: {exc}")


def test_many_processes_hammering_one_file(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    path = str(tmp_path / "shared.rtxcache")
    errors: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    reads = ctx.Value("i", 0)
    writers = [ctx.Process(target=_writer, args=(path, w, 50, errors)) for w in range(8)]
    readers = [ctx.Process(target=_reader, args=(path, stop, errors, reads)) for _ in range(3)]
    for p in readers + writers:
        p.start()
    for p in writers:
        p.join(120)
    stop.set()
    for p in readers:
        p.join(30)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert all(p.exitcode == 0 for p in writers + readers)
    assert reads.value > 0  # the readers really read while the writers wrote
    final = read_cache_file(path)
    assert final is not None and blob_is_whole(final)
    assert final in {make_blob(w, 49) for w in range(8)}  # the last write of some writer
    assert not list(tmp_path.glob("*.tmp"))


# --- a writer killed mid-write -----------------------------------------------------------------


def _stuck_writer(path: str, ready: mp.Event) -> None:
    def stall(fd: int) -> None:
        ready.set()  # the new file is fully written but not yet renamed: kill me now
        time.sleep(60)

    local.os.fsync = stall  # type: ignore[assignment]
    persist_runtime_cache(path, b"NEW" * 100_000)


def test_sigkill_during_write_keeps_previous_cache(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    path = tmp_path / "c.rtxcache"
    assert persist_runtime_cache(path, b"OLD" * 1000)
    ready = ctx.Event()
    child = ctx.Process(target=_stuck_writer, args=(str(path), ready))
    child.start()
    assert ready.wait(30)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    assert read_cache_file(path) == b"OLD" * 1000  # the previous cache, intact
    assert list(tmp_path.glob(".c.rtxcache.*.tmp"))  # the dead writer's temp file...
    assert persist_runtime_cache(path, b"NEXT" * 10)  # ...the lock died with it
    assert read_cache_file(path) == b"NEXT" * 10
    assert not list(tmp_path.glob("*.tmp"))  # ...and the next writer cleaned up


def _looping_writer(path: str) -> None:
    i = 0
    while True:
        persist_runtime_cache(path, make_blob(99, i % 400))
        i += 1


def test_sigkill_at_random_moments_never_leaves_a_bad_file(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    path = tmp_path / "c.rtxcache"
    rng = random.Random(4)
    valid = {make_blob(99, i) for i in range(400)}
    for _ in range(6):
        child = ctx.Process(target=_looping_writer, args=(str(path),))
        child.start()
        time.sleep(rng.uniform(0.02, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            blob = read_cache_file(path)
        assert blob is None or blob in valid
    assert persist_runtime_cache(path, b"after" * 10)
    assert read_cache_file(path) == b"after" * 10
