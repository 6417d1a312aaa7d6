#!/usr/bin/env python3
"""Call an API behind portcullis as a service: get a client-credentials token from the
identity provider, then send it as a Bearer token.

    TOKEN_URL=https://idp.example.com/token \
    CLIENT_ID=ci-runner CLIENT_SECRET='<from your secret store>' SCOPE=api:read \
    PORTCULLIS_URL=https://app.example.com \
    python3 client_credentials.py

Prints the JSON answer of GET $PORTCULLIS_URL/api/whoami and exits non-zero unless it is a 200.
Fetch a new token when the old one is about to expire (expires_in), not for every call.
"""

import json
import os
import sys

import requests


def main() -> int:
    try:
        token_url = os.environ["TOKEN_URL"]
        client_id = os.environ["CLIENT_ID"]
        client_secret = os.environ["CLIENT_SECRET"]
        url = os.environ["PORTCULLIS_URL"]
    except KeyError as missing:
        print(f"set {missing.args[0]}", file=sys.stderr)
        return 2

    grant = requests.post(
        token_url,
        auth=(client_id, client_secret),  # client_secret_basic
        data={"grant_type": "client_credentials", "scope": os.environ.get("SCOPE", "api:read")},
        timeout=10,
    )
    if grant.status_code != 200:
        print(f"token endpoint: {grant.status_code}: {grant.text}", file=sys.stderr)
        return 1
    token = grant.json()["access_token"]

    resp = requests.get(
        f"{url.rstrip('/')}/api/whoami",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        allow_redirects=False,
        timeout=10,
    )
    if resp.status_code != 200:
        # WWW-Authenticate says why (invalid_token, insufficient_scope), never the token.
        print(f"{resp.status_code}: {resp.headers.get('WWW-Authenticate', resp.text)}", file=sys.stderr)
        return 1
    print(json.dumps(resp.json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
