"""The command line: ``python -m shared.video probe FILE`` prints what the pipeline sees."""

from __future__ import annotations

import json
import os
import sys

from shared.video.common import VideoError
from shared.video.probing import probe


def main(argv: list[str] | None = None) -> int:
    """python -m shared.video probe FILE — print what the pipeline sees in a file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m shared.video", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("probe", help="print the probe summary as JSON")
    pr.add_argument("file")
    pr.add_argument("--frames", action="store_true", help="include per-frame timestamps")
    args = parser.parse_args(argv)
    try:
        result = probe(args.file, size_bytes=os.path.getsize(args.file))
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json() if args.frames else result.summary(), indent=2))
    return 0


