"""``python -m haproxy_ingress.readme README.md [--check]``: the README's table of keys.

Rewrites the table between the markers from :mod:`registry`'s declarations
(``--check``: exit 1 if it differs instead). A module of its own so that
running it does not import it twice through the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from haproxy_ingress.registry import with_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m haproxy_ingress.readme")
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    updated = with_table(text)
    if args.check:
        if updated != text:
            print(f"{args.readme}: settings table is stale; run without --check", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        args.readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
