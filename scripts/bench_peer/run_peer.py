"""Runs one peer against the fake items API with its output to /dev/null (its log to a file in
WORK_DIR, shown when it fails) and prints one JSON
line: wall time from spawn to exit, the peer process's CPU time and peak RSS (getrusage of the
child), and the spawn time (for the time to the first request). Used by `ivory-bench peer`.

usage: run_peer.py {singer|airbyte} BASE_URL WORK_DIR
"""

import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    peer, base_url, work = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump({"base_url": base_url}, f)
    if peer == "singer":
        args = [sys.executable, os.path.join(HERE, "tap_items.py"), "--config", config]
    elif peer == "airbyte":
        catalog = os.path.join(work, "catalog.json")
        with open(catalog, "w") as f:
            json.dump(
                {
                    "streams": [
                        {
                            "stream": {
                                "name": "items",
                                "json_schema": {},
                                "supported_sync_modes": ["full_refresh"],
                            },
                            "sync_mode": "full_refresh",
                            "destination_sync_mode": "overwrite",
                        }
                    ]
                },
                f,
            )
        args = [
            sys.executable,
            os.path.join(HERE, "airbyte_items.py"),
            "read",
            "--config",
            config,
            "--catalog",
            catalog,
        ]
    else:
        raise SystemExit(f"unknown peer {peer!r}")
    spawn_ns = time.time_ns()
    started = time.perf_counter()
    log = os.path.join(work, "peer.log")
    with open(os.devnull, "wb") as devnull, open(log, "wb") as stderr:
        code = subprocess.call(args, stdout=devnull, stderr=stderr)
    if code != 0:
        with open(log, "rb") as f:
            sys.stderr.write(f.read()[-4000:].decode("utf-8", "replace"))
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "exit_code": code,
                "spawn_unix_ns": spawn_ns,
                "wall_ms": wall * 1e3,
                "user_ms": usage.ru_utime * 1e3,
                "sys_ms": usage.ru_stime * 1e3,
                "peak_rss_kib": usage.ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main()
