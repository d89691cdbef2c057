"""Per-module mutation score of the last `mutmut run` (run from the project root).

Score = killed / (killed + survived + untested); a timeout counts as killed (the mutant made the
tests hang, which a run notices). Survivors whose change cannot alter behaviour are listed apart,
each with the reason, and a second score leaves them out; every other survivor is listed for
review. "checked" counts the mutants with a verdict, "not checked" those a stopped run or a
run limited to some modules left. With ``--record COMMAND`` the table also replaces its part of
bench/RESULTS.md. Uses mutmut's own data (pinned: mutmut 3.8.1).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

KILLED = {"killed", "timeout", "caught by type check"}
# Our SQL is written in capitals; English text that contains "from" is not SQL.
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|CREATE|ALTER|FROM|WHERE|ORDER BY|SET)\b")


def _only(pattern: str, old: str, new: str) -> bool:
    """Old and new lines are the same once every match of ``pattern`` is removed."""
    def without(line: str) -> str:  # mutmut writes a dropped argument as "f(a, )"
        return re.sub(r",\s*\)", ")", re.sub(pattern, "", line))

    return old != new and without(old) == without(new)


# (reason, test on the changed lines). Conservative: a message, a name, a number that reaches a
# result is never judged equivalent.
EQUIVALENT = [
    ("SQL text changed in letter case only: SQLite keywords and identifiers are case-insensitive",
     lambda old, new: old.lower() == new.lower() and SQL.search(old)),
    ("HTTP header name in other letter case: header names are case-insensitive",
     lambda old, new: "headers.get(" in old and old.lower() == new.lower()),
    ("block size of a read: a digest does not depend on the size of the blocks it is fed",
     lambda old, new: _only(r"\.read\([^)]*\)", old, new)),
    ("gzip compression level: the decompressed content is the same at any level",
     lambda old, new: "gzip.compress" in old and _only(r",?\s*compresslevel=\d+", old, new)),
    ("allow_pickle=False is np.load's default: the loader never unpickles either way",
     lambda old, new: "np.load(" in old and _only(r",?\s*allow_pickle=(True|False|None)", old,
                                                   new)),
    ("copy=True dropped from an astype: True is astype's default",
     lambda old, new: ".astype(" in old and "copy=True" in old
     and _only(r",?\s*copy=True", old, new)),
    ("a float literal's or a hashlib algorithm's name in other letter case: both are read "
     "case-insensitively",
     lambda old, new: old.lower() == new.lower() and ('float("' in old or "hashlib." in old)),
    ("copy flag of an astype turned into bytes: the bytes are the same either way",
     lambda old, new: ".astype(" in old and ".tobytes()" in old
     and _only(r",?\s*copy=(True|False|None)", old, new)),
]
# Functions that run at import time to build module constants (the pinned digests, the
# catalog's availability checks): mutmut
# switches a mutant on inside calls made by the tests, so these mutants never run.
AT_IMPORT = {"mnistlab.data.datasets.x__files", "mnistlab.data.datasets.x__has_module",
             "mnistlab.data.datasets.x__has_local_copy"}


def _changed_lines(diff: str) -> tuple[str, str]:
    old = [line[1:].strip() for line in diff.splitlines()
           if line.startswith("-") and not line.startswith("---")]
    new = [line[1:].strip() for line in diff.splitlines()
           if line.startswith("+") and not line.startswith("+++")]
    return " ".join(old), " ".join(new)


def classify(name: str, path) -> str | None:
    """Why the surviving mutant ``name`` cannot change behaviour, or None."""
    if name.split("__mutmut_")[0] in AT_IMPORT:
        return "built at import time: mutmut cannot switch this mutant on"
    old, new = _changed_lines(get_diff_for_mutant(name, path=path))
    return next((reason for reason, test in EQUIVALENT if test(old, new)), None)


def main() -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    unchecked: Counter = Counter()
    survivors, equivalent = [], defaultdict(list)
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            module = name.split(".x")[0] if ".x" in name else name
            status = status_by_exit_code[exit_code]
            status = "killed" if status in KILLED else status
            if status == "not checked":
                unchecked[module] += 1
                continue
            if status != "killed":
                reason = classify(name, path) if status == "survived" else None
                if reason:
                    equivalent[reason].append(name)
                    status = "equivalent"
                else:
                    survivors.append(f"{name}: {status}")
            counts[module][status] += 1
    print(f"{'module':<38}{'checked':>8}{'killed':>8}{'survived':>10}{'untested':>9}"
          f"{'equiv.':>8}{'score':>8}{'w/o equiv.':>12}{'not checked':>13}")
    total = Counter()
    for module in sorted(set(counts) | set(unchecked)):
        total.update(counts[module])
        _row(module, counts[module], unchecked[module])
    _row("all", total, sum(unchecked.values()))
    print("\nJudged equivalent (left out of the second score):")
    for reason, names in equivalent.items():
        print(f"- {reason}: {len(names)}: {', '.join(n.split('.', 1)[1] for n in names)}")
    print("\nSurviving, for review:")
    print("\n".join(survivors) or "(none)")


def _row(name: str, c: Counter, not_checked: int) -> None:
    judged = c["killed"] + c["survived"] + c["no tests"]
    every = f"{c['killed'] / (judged + c['equivalent']):.1%}" if judged else "-"
    without_equivalent = f"{c['killed'] / judged:.1%}" if judged else "-"
    print(f"{name:<38}{sum(c.values()):>8}{c['killed']:>8}{c['survived']:>10}{c['no tests']:>9}"
          f"{c['equivalent']:>8}{every:>8}{without_equivalent:>12}{not_checked:>13}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", metavar="COMMAND",
                        help="also rewrite bench/RESULTS.md's part with this output, as made by "
                             "COMMAND (bench/mutation.sh passes its own command line)")
    arguments = parser.parse_args()
    if arguments.record is None:
        main()
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results import rewrite

        copy = io.StringIO()
        with contextlib.redirect_stdout(copy):
            main()
        print(copy.getvalue(), end="")
        rewrite("bench/mutation.sh", copy.getvalue(), arguments.record)
