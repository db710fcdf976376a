"""Mutation score of the format, manifest, cache-fit and compatibility-rule modules (mutmut).

    pip install mutmut==3.8.1                         # not a CI dependency: CI does not run it
    python scripts/mutation_score.py sample 3 > /tmp/sample.txt    # every 3rd mutant's name
    xargs -a /tmp/sample.txt flock /tmp/heavy.lock mutmut run --max-children 2
    python scripts/mutation_score.py score            # per module, from mutants/**/*.meta

``pyproject.toml``'s ``[tool.mutmut]`` names the modules and the (fast) tests that run against
each mutant. ``sample`` needs one ``mutmut run`` (or ``mutmut run --help`` after a first
generation) to have written the mutants; without a sample, ``mutmut run`` runs them all (~3600,
about 25 minutes on two idle cores). docs/verification.md has the last score.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED, SURVIVED, NO_TESTS = "killed", "survived", "no tests"


def _results() -> dict[str, dict[str, int | None]]:
    out = {}
    for meta in sorted((ROOT / "mutants").glob("rtxpack/**/*.py.meta")):
        module = str(meta.relative_to(ROOT / "mutants"))[: -len(".meta")]
        out[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return out


def _status(code: int | None) -> str | None:
    if code is None:
        return None  # not run
    return {0: SURVIVED, 33: NO_TESTS}.get(code, KILLED)


def main(argv: list[str]) -> None:
    results = _results()
    if not results:
        raise SystemExit("no mutants/ here: run `mutmut run` first (see this file's docstring)")
    if argv[:1] == ["sample"]:
        step = int(argv[1]) if len(argv) > 1 else 3
        names = sorted(name for codes in results.values() for name in codes)
        print("\n".join(names[::step]))
        return
    total: Counter[str] = Counter()
    print(f"{'module':34} {'run':>6} {'killed':>7} {'survived':>9} {'no tests':>9} {'score':>7}")
    for module, codes in results.items():
        c = Counter(s for s in map(_status, codes.values()) if s is not None)
        total += c
        run = sum(c.values())
        if run:
            print(
                f"{module:34} {run:6} {c[KILLED]:7} {c[SURVIVED]:9} {c[NO_TESTS]:9} "
                f"{100 * c[KILLED] / run:6.1f}%"
            )
    run = sum(total.values())
    print(
        f"{'all':34} {run:6} {total[KILLED]:7} {total[SURVIVED]:9} {total[NO_TESTS]:9} "
        f"{100 * total[KILLED] / max(run, 1):6.1f}%"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
