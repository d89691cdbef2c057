"""Per-module mutation score from `mutmut results --all` on standard input.

Score = killed / (killed + survived + untested); a timeout counts as killed (the mutant made
the tests hang, which a run notices). Survivors are listed for review.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

KILLED = {"killed", "timeout", "caught by type check"}


def main() -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for line in sys.stdin:
        match = re.match(r"\s*(mnistlab\.\w+)\.(\S+): (.+)$", line.rstrip())
        if not match:
            continue
        module, mutant, status = match.groups()
        status = "killed" if status in KILLED else status
        counts[module][status] += 1
        if status != "killed":
            survivors.append(f"{module}.{mutant}: {status}")
    total = Counter()
    print(f"{'module':<22}{'mutants':>9}{'killed':>8}{'survived':>10}{'untested':>10}{'score':>8}")
    for module, c in sorted(counts.items()):
        total.update(c)
        _row(module, c)
    _row("all", total)
    print("\nNot killed:")
    print("\n".join(survivors) or "(none)")


def _row(name: str, c: Counter) -> None:
    judged = c["killed"] + c["survived"] + c["no tests"]
    score = c["killed"] / judged if judged else float("nan")
    print(f"{name:<22}{sum(c.values()):>9}{c['killed']:>8}{c['survived']:>10}{c['no tests']:>10}"
          f"{score:>8.1%}")


if __name__ == "__main__":
    main()
