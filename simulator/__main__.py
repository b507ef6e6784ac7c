"""`python -m simulator --port 8080 --latency-ms 20 --generate 1000`."""

from __future__ import annotations

import argparse

from .server import run


def main() -> None:
    parser = argparse.ArgumentParser(description="Plusofon voicemail API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--generate", type=int, default=0, help="create N accounts acct-NNNNNN")
    parser.add_argument("--accounts", help="CSV: account,token[,email,send,mode]")
    parser.add_argument(
        "--lean", action="store_true", help="no per-account history: for a million accounts"
    )
    args = parser.parse_args()
    run(
        args.host,
        args.port,
        latency_ms=args.latency_ms,
        generate=args.generate,
        accounts_csv=args.accounts,
        lean=args.lean,
    )


if __name__ == "__main__":
    main()
