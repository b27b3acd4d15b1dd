"""A full-page PNG of a report.html, rendered by headless Chromium (for the docs and the demo).

    python scripts/screenshot_report.py OUT/report.html docs/report.png [--width 1200]

Uses the test suite's DevTools driver (tests/browser.py: standard library only, Chromium over
--remote-debugging-pipe). Needs a Chromium binary: Debian's ``chromium`` package, or CHROMIUM=path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import BrowserError, screenshot  # noqa: E402  (tests/ is not an installed package)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="the page, e.g. OUT/report.html")
    parser.add_argument("png", type=Path, help="the PNG to write, e.g. docs/report.png")
    parser.add_argument("--width", type=int, default=1200, help="page width in CSS pixels (default 1200)")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"screenshot_report: {args.html}: no such file; run l2s-report OUT first", file=sys.stderr)
        return 2
    try:
        print(screenshot(args.html, args.png, args.width))
    except BrowserError as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
