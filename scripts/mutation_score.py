"""Mutation score of the format, manifest, cache-fit and compatibility-rule modules (mutmut).

    pip install mutmut==3.8.1                         # not a CI dependency: CI does not run it
    python scripts/mutation_score.py sample 3 > /tmp/sample.txt    # every 3rd mutant's name
    xargs -a /tmp/sample.txt flock /tmp/heavy.lock mutmut run --max-children 2
    python scripts/mutation_score.py score            # per module, from mutants/**/*.meta

``pyproject.toml``'s ``[tool.mutmut]`` names the modules and the (fast) tests that run against
each mutant. The score counts timeouts as killed (a mutant that makes a test hang is caught) and
"no tests" mutants as not killed. ``sample`` needs one ``mutmut run`` (or ``mutmut run --help``
after a first generation) to have written the mutants; without a sample, ``mutmut run`` runs
them all (~3700). docs/verification.md has the last score and how long a run takes.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("killed", "timeout", "survived", "no tests", "suspicious")


def _results() -> dict[str, dict[str, int | None]]:
    out = {}
    for meta in sorted((ROOT / "mutants").glob("rtxpack/**/*.py.meta")):
        module = str(meta.relative_to(ROOT / "mutants"))[: -len(".meta")]
        out[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return out


def _status(code: int | None) -> str | None:
    """mutmut's own reading of a mutant's exit code (None: not run yet)."""
    from mutmut.stats import status_by_exit_code

    if code is None:
        return None
    status = status_by_exit_code[code]
    return "killed" if status == "caught by type check" else status


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
    print(f"{'module':30} {'run':>5}" + "".join(f" {c:>10}" for c in COLUMNS) + f" {'score':>6}")

    def row(name: str, c: Counter[str]) -> None:
        run = sum(c.values())
        score = 100 * (c["killed"] + c["timeout"]) / max(run, 1)
        cells = "".join(f" {c[col]:>10}" for col in COLUMNS)
        print(f"{name:30} {run:5}{cells} {score:5.1f}%")

    for module, codes in results.items():
        c = Counter(s for s in map(_status, codes.values()) if s is not None)
        total += c
        if c:
            row(module, c)
    row("all", total)


if __name__ == "__main__":
    main(sys.argv[1:])
