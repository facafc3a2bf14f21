"""Compare the installed distributions with a lock file; exit 1 and list the differences.

    python scripts/check_env.py requirements.lock

Every ``name==version`` line of the lock must be installed at exactly that version, and exactly
one installed distribution may provide the ``cv2`` module (several OpenCV wheels overwrite each
other's files, and which one wins depends on the install order). Used by ``scripts/env.sh`` when
it builds the environment and by ``tests/test_environment.py``.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str) -> dict[str, str]:
    """``{canonical name: version}`` of every pinned line of a pip-style lock file."""
    pins = {}
    with open(path) as f:
        for line in f:
            m = _PIN.match(line.strip())
            if m:
                pins[canonical(m.group(1))] = m.group(2)
    return pins


def installed() -> dict[str, str]:
    """``{canonical name: version}`` of the distributions importable in this interpreter."""
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def cv2_providers() -> list[str]:
    """Installed distributions whose files include the top-level ``cv2`` package."""
    out = []
    for d in metadata.distributions():
        if any(str(f).startswith("cv2/") for f in (d.files or ())):
            out.append(canonical(d.metadata["Name"]))
    return sorted(set(out))


def differences(lock: dict[str, str], have: dict[str, str]) -> list[str]:
    """Human-readable lines, one per locked package that is missing or at another version."""
    out = []
    for name, want in sorted(lock.items()):
        got = have.get(name)
        if got is None:
            out.append(f"{name}: locked {want}, not installed")
        elif got != want:
            out.append(f"{name}: locked {want}, installed {got}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    problems = differences(read_lock(argv[0]), installed())
    providers = cv2_providers()
    if len(providers) != 1:
        problems.append(f"cv2 must come from exactly one package, found {providers or 'none'}")
    for line in problems:
        print("check_env:", line, file=sys.stderr)
    if not problems:
        print(f"check_env: the environment matches {argv[0]} ({len(read_lock(argv[0]))} packages; cv2 from "
              f"{providers[0]})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
