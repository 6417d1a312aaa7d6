"""An Envoy ext_authz client for portcullis' tests: check requests built with Envoy's
published protos (PyPI envoy-data-plane, generated from Envoy's data-plane API), sent over
grpcio as Envoy's ext_authz filter sends them.

  ext_authz_check.py HOST:PORT COOKIE
      Sends three checks for GET https://app.example.com/app/x?y=1: with the session COOKIE
      (and a forged x-forwarded-user), from a browser without credentials, and from a program
      without credentials. Prints one JSON object per check:
      {"case", "code", "http_status", "set": {name: value}, "remove": [...], "location"}.

  ext_authz_check.py payload OUT COOKIE PATH
      Writes one gRPC-framed CheckRequest with the session COOKIE for PATH to OUT (the
      benchmark's h2load request body).
"""

import json
import struct
import sys

import grpc
from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress
from envoy_data_plane.envoy.service.auth.v3 import (
    AttributeContext,
    AttributeContextHttpRequest,
    AttributeContextPeer,
    AttributeContextRequest,
    AuthorizationSyncStub,
    CheckRequest,
)


def check_request(path, headers):
    headers = {k.lower(): v for k, v in headers.items()}
    headers.update({":authority": "app.example.com", ":method": "GET", ":path": path})
    return CheckRequest(
        attributes=AttributeContext(
            source=AttributeContextPeer(
                address=Address(socket_address=SocketAddress(address="10.1.2.3", port_value=40000))
            ),
            request=AttributeContextRequest(
                http=AttributeContextHttpRequest(
                    id="7d1c",
                    method="GET",
                    headers=headers,
                    path=path,
                    host="app.example.com",
                    scheme="https",
                    protocol="HTTP/1.1",
                )
            ),
        )
    )


def summary(case, response):
    # proto3 leaves a zero code (OK) out: an empty or absent status is OK, as Envoy reads it.
    out = {"case": case, "code": response.status.code if response.status is not None else 0}
    if response.is_set("ok_response"):
        ok = response.ok_response
        out["set"] = {h.header.key: h.header.value for h in ok.headers}
        out["remove"] = list(ok.headers_to_remove)
    if response.is_set("denied_response"):
        denied = response.denied_response
        out["http_status"] = denied.status.code if denied.status else None
        out["location"] = next(
            (h.header.value for h in denied.headers if h.header.key.lower() == "location"), None
        )
    return out


def run(target, cookie):
    with grpc.insecure_channel(target) as channel:
        stub = AuthorizationSyncStub(channel)
        cases = [
            ("session", {"cookie": cookie, "x-forwarded-user": "mallory", "accept": "application/json"}),
            ("browser", {"accept": "text/html,application/xhtml+xml"}),
            ("program", {"accept": "application/json"}),
        ]
        for case, headers in cases:
            print(json.dumps(summary(case, stub.check(check_request("/app/x?y=1", headers)))), flush=True)


def payload(out, cookie, path):
    message = bytes(check_request(path, {"cookie": cookie, "accept": "application/json"}))
    with open(out, "wb") as f:
        # gRPC's length-prefixed message: no compression, 4-byte big-endian length.
        f.write(struct.pack(">BI", 0, len(message)) + message)


if __name__ == "__main__":
    if sys.argv[1] == "payload":
        payload(*sys.argv[2:5])
    else:
        run(sys.argv[1], sys.argv[2])
