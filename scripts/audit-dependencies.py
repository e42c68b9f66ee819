"""`make lint`'s dependency audit: pip-audit over the hashed lock files.

Fails when any pinned package has a known vulnerability. pip-audit skips a package
whose advisory data it cannot fetch (PyPI's per-release JSON; a mirror without it
answers 404): a skipped package was NOT audited, so this says so loudly and names the
count. With AUDIT_STRICT=1 (CI with PyPI reachable) a skipped package fails too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def audit(lock_file: str) -> tuple[list[str], list[str]]:
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "pip-audit"),
            *("-r", lock_file, "--disable-pip", "--no-deps", "--progress-spinner", "off", "-f", "json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if not result.stdout.strip().startswith("{"):
        sys.exit(f"pip-audit failed on {lock_file}:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    vulnerable, skipped = [], []
    for dependency in report["dependencies"]:
        if dependency.get("skip_reason"):
            skipped.append(dependency["name"])
        for vuln in dependency.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            vulnerable.append(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixed})")
    return vulnerable, skipped


def main(lock_files: list[str]) -> int:
    failed = False
    for lock_file in lock_files:
        vulnerable, skipped = audit(lock_file)
        for line in vulnerable:
            print(f"{lock_file}: {line}")
        failed |= bool(vulnerable)
        if skipped:
            print(
                f"{lock_file}: WARNING {len(skipped)} package(s) NOT audited (no advisory data reachable): "
                + ", ".join(skipped[:8])
                + (" …" if len(skipped) > 8 else "")
            )
            failed |= os.environ.get("AUDIT_STRICT") == "1"
        elif not vulnerable:
            print(f"{lock_file}: no known vulnerabilities")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["requirements.txt"]))
