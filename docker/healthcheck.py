#!/usr/bin/env python
"""Container healthcheck: GET /readyz (database and broker reachable) on the local gunicorn.

The Host header is taken from ALLOWED_HOSTS, because Django answers 400 to any other host;
/readyz is exempt from the HTTPS redirect, so plain HTTP inside the container is fine.
Exit 0 when ready, 1 otherwise (with the reason on stderr, never personal data).
"""

import os
import sys
import urllib.error
import urllib.request


def _host() -> str:
    for entry in os.environ.get("ALLOWED_HOSTS", "").split(","):
        entry = entry.strip()
        if entry and entry != "*":
            # ".example.com" allows example.com and its subdomains.
            return entry.lstrip(".")
    return "localhost"


def main() -> int:
    port = os.environ.get("PORT", "8000")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/readyz", headers={"Host": _host()})
    try:
        with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        sys.stderr.write(f"/readyz answered {exc.code}: {exc.read(500).decode(errors='replace')}\n")
    except OSError as exc:
        sys.stderr.write(f"/readyz unreachable: {exc.__class__.__name__}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
