"""``python -m standins``: run the sandbox until stopped.

Writes the FNTC_* settings that point the product at the stand-ins to
``.cache/sandbox.env`` (or ``--env-file``), one ``NAME=value`` a line, for
``set -a; . .cache/sandbox.env``; prints one line when ready; and keeps the
stand-ins up until SIGINT or SIGTERM, when it removes what it wrote.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .sandbox import Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins",
                                     description="Run the FN, Keycloak and GitHub stand-ins.")
    parser.add_argument("--env-file", type=Path,
                        default=Path(__file__).resolve().parent.parent / ".cache" / "sandbox.env",
                        help="where to write the FNTC_* settings that point at the stand-ins "
                             "(default: .cache/sandbox.env)")
    parser.add_argument("--work-dir", type=Path, help="where to keep the GitHub App key")
    args = parser.parse_args(argv)

    # The handler only flips a flag: Event.set takes a lock, and a second signal
    # arriving inside the first one's call would deadlock on it.
    stop = {"asked": False}
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.update(asked=True))
    sandbox = Sandbox(work_dir=args.work_dir).start()
    try:
        args.env_file.parent.mkdir(parents=True, exist_ok=True)
        args.env_file.write_text("".join(f"{key}={value}\n"
                                         for key, value in sandbox.env().items()))
        args.env_file.chmod(0o600)
        print(f"stand-ins ready: FN {sandbox.fn_url}, Keycloak {sandbox.keycloak_url}, "
              f"GitHub {sandbox.github_url}; settings in {args.env_file}", flush=True)
        while not stop["asked"]:
            time.sleep(0.2)
    finally:
        sandbox.stop()
        args.env_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
