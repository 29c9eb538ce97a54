"""Write docs/parameters.md from the table in pypty/parameters/table.py.

Usage: ``python scripts/generate_parameter_docs.py [--check]``; with
``--check`` nothing is written and the exit status is 1 when the file is
missing or stale.
"""

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pypty.parameters import parameter_reference_markdown  # noqa: E402

TARGET = ROOT / "docs" / "parameters.md"


def main(argv=None) -> int:
    """Generate (or, with --check, verify) docs/parameters.md; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/parameters.md is not up to date")
    args = parser.parse_args(argv)
    text = parameter_reference_markdown()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
        if current != text:
            print("%s is stale; run python scripts/generate_parameter_docs.py" % TARGET)
            return 1
        print("%s is up to date" % TARGET)
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print("wrote %s" % TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
