"""The content store's lock files: prune removes those of the blobs it removes (and those earlier
prunes left), never one another process holds, and never in a way that lets two holders in."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from rtxpack._registry.store import ContentStore


def _put(store: ContentStore, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.put(digest, data)  # under the blob's lock: creates locks/<hex>.lock
    return digest


def _locks(store: ContentStore) -> set[str]:
    return {p.name for p in (store.root / "locks").iterdir()}


def test_prune_removes_the_lock_files_of_the_blobs_it_removes(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    old, kept = _put(store, b"old"), _put(store, b"kept")
    os.utime(store.path(old), (1, 1))
    assert len(_locks(store)) == 2
    assert store.prune(older_than_s=3600).removed == 1
    assert _locks(store) == {f"{kept[7:]}.lock"}  # a kept blob keeps its lock file
    assert store.prune().removed == 1
    assert _locks(store) == set()  # they were left behind, empty, one per blob ever pruned


def test_lock_files_left_by_an_earlier_prune_are_removed(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    digest = _put(store, b"x")
    (store.root / "locks" / ("0" * 64 + ".lock")).touch()  # an orphan: no blob, no download
    (store.root / "locks" / "notes.txt").touch()  # not the store's: left alone
    partial = store.root / "incoming" / ("1" * 64 + ".partial")
    partial.write_bytes(b"part")
    (store.root / "locks" / ("1" * 64 + ".lock")).touch()
    os.utime(partial)  # recent: kept with older_than_s, and so is its lock file
    store.prune(older_than_s=3600)
    assert _locks(store) == {f"{digest[7:]}.lock", "1" * 64 + ".lock", "notes.txt"}


def test_a_lock_held_by_another_process_is_kept(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    digest = _put(store, b"in use")
    lock_file = store.root / "locks" / f"{digest[7:]}.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
            str(lock_file),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = store.prune()
        assert (result.removed, result.skipped_in_use) == (0, 1)
        os.unlink(store.path(digest))  # the holder's blob gone, its lock still held
        store.prune()
        assert lock_file.exists()
    finally:
        holder.communicate("")
    store.prune()
    assert _locks(store) == set()


def test_pruning_lock_files_never_lets_two_holders_in(tmp_path: Path) -> None:
    # Lockers and prunes race on one blob's lock; a holder creates a marker with O_EXCL, which
    # fails if another holder (on a lock file prune unlinked and another recreated) has it too.
    store = ContentStore(tmp_path / "s")
    digest = _put(store, b"contended")
    marker = tmp_path / "holder"
    errors: list[str] = []
    stop = time.monotonic() + 1.5

    def locker() -> None:
        while time.monotonic() < stop and not errors:
            with store._lock(digest, 10):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    errors.append("two holders at once")
                    return
                os.close(fd)
                time.sleep(0.0005)
                os.unlink(marker)

    def pruner() -> None:
        while time.monotonic() < stop and not errors:
            store.prune()  # the blob goes at once; then only the lock file is pruned

    threads = [threading.Thread(target=locker) for _ in range(3)] + [
        threading.Thread(target=pruner)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
