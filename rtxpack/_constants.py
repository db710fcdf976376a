"""Where rtxpack keeps files, the environment variables it reads, and its defaults.

One cache root holds everything rtxpack keeps between runs::

    <cache root>/                      RTXPACK_CACHE_DIR, else the platform's user cache folder
        runtime-caches/                TensorRT-RTX runtime caches grown on this machine
        rebuilt/                       bundles rebuilt from source by load(..., rebuild=True)

The user cache folder is ``platformdirs.user_cache_dir("rtxpack", appauthor=False)``:
``~/.cache/rtxpack`` on Linux, ``%LOCALAPPDATA%\\rtxpack\\Cache`` on Windows.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "APP_NAME",
    "CACHE_DIR_ENV",
    "LOCK_TIMEOUT_S",
    "MAX_CACHE_BYTES",
    "REBUILT_DIR",
    "RUNTIME_CACHES_DIR",
    "cache_root",
]

APP_NAME = "rtxpack"
#: Environment variable that moves the cache root.
CACHE_DIR_ENV = "RTXPACK_CACHE_DIR"
#: Sub-folders of the cache root.
RUNTIME_CACHES_DIR = "runtime-caches"
REBUILT_DIR = "rebuilt"
#: Largest runtime cache rtxpack reads or writes (a sane bound; real caches are MBs).
MAX_CACHE_BYTES = 4 * 1024**3
#: How long a writer waits for another process's lock on a cache file, in seconds.
LOCK_TIMEOUT_S = 60.0


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir`` when given, else ``$RTXPACK_CACHE_DIR``, else the platform's
    per-user cache folder for rtxpack."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
