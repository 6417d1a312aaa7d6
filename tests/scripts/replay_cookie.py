#!/usr/bin/env python3
"""Call an application behind portcullis with a session cookie copied from a browser.

    PORTCULLIS_URL=https://app.example.com \
    PORTCULLIS_COOKIE='<value of the _portcullis cookie>' \
    python3 replay_cookie.py

Prints the JSON answer of GET $PORTCULLIS_URL/api/whoami and exits non-zero unless it is a 200.
The cookie is a bearer credential: keep it out of shell history and logs.
"""

import json
import os
import sys

import requests


def main() -> int:
    url = os.environ.get("PORTCULLIS_URL")
    cookie = os.environ.get("PORTCULLIS_COOKIE")
    if not url or not cookie:
        print("set PORTCULLIS_URL and PORTCULLIS_COOKIE", file=sys.stderr)
        return 2

    resp = requests.get(
        f"{url.rstrip('/')}/api/whoami",
        cookies={"_portcullis": cookie},
        # Ask for JSON: without a session portcullis then answers 401 instead of sending
        # us to the login page.
        headers={"Accept": "application/json"},
        allow_redirects=False,
        timeout=10,
    )
    if resp.status_code != 200:
        print(f"{resp.status_code} {resp.reason}: {resp.text}", file=sys.stderr)
        return 1
    print(json.dumps(resp.json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
