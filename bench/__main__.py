"""``python -m bench alerts ...``: minimal dispatch to the benchmarks that have a ``main``."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "alerts":
        print("usage: python -m bench alerts --series DIR [--json PATH]", file=sys.stderr)
        return 2
    from bench import alerts
    return alerts.main(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
