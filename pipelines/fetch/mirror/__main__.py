"""Start a loopback mirror from a shell: ``python -m pipelines.fetch.mirror physionet --root DIR``.

Passwords are never taken on the command line: ``--users-env VAR`` names an environment variable
holding ``user:password[,user:password...]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pipelines.fetch.mirror.server import Faults, MirrorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.fetch.mirror", description=__doc__)
    parser.add_argument(
        "kind", choices=["physionet", "static", "kaggle", "tcia", "github", "gdrive", "huggingface"]
    )
    parser.add_argument("--root", required=True, help="folder to serve (layout per kind: see each module)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--bandwidth", type=int, default=None, help="per-connection cap, bytes/s")
    parser.add_argument("--users-env", default=None, help="env var holding user:password[,...] for auth")
    args = parser.parse_args(argv)
    users = None
    if args.users_env:
        raw = os.environ.get(args.users_env, "")
        users = dict(pair.split(":", 1) for pair in raw.split(",") if ":" in pair)
    faults = Faults(bandwidth_bytes_per_s=args.bandwidth)
    common: dict[str, Any] = {"faults": faults, "host": args.host, "port": args.port}
    server: MirrorServer
    if args.kind == "physionet":
        from pipelines.fetch.mirror.physionet import PhysioNetMirror

        server = PhysioNetMirror(args.root, users=users, **common)
    elif args.kind == "static":
        from pipelines.fetch.mirror.server import StaticMirror

        server = StaticMirror(args.root, users=users, **common)
    elif args.kind == "kaggle":
        from pipelines.fetch.mirror.kaggle import KaggleMirror

        server = KaggleMirror(args.root, users=users or {}, **common)
    elif args.kind == "tcia":
        from pipelines.fetch.mirror.tcia import TciaMirror

        server = TciaMirror(args.root, users=users, **common)
    elif args.kind == "github":
        from pipelines.fetch.mirror.github import GitHubMirror

        server = GitHubMirror(args.root, **common)
    elif args.kind == "gdrive":
        from pipelines.fetch.mirror.gdrive import GoogleDriveMirror

        server = GoogleDriveMirror(args.root, **common)
    else:
        from pipelines.fetch.mirror.huggingface import HubMirror

        server = HubMirror(args.root, **common)
    print(f"{args.kind} mirror serving {server.root} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
