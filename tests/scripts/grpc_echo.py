"""A gRPC service and client for portcullis' tests (grpcio, generic handlers: no protoc).

  grpc_echo.py server PORT
      Serves /echo.Echo/Say on 127.0.0.1:PORT in clear text (h2c, as an upstream behind
      portcullis) and prints "ready" once listening. Say answers "hello <request> as <user>",
      <user> being the x-forwarded-user metadata portcullis set, and sends a trailer
      x-trailer: kept.

  grpc_echo.py client HOST:PORT CA_PEM TOKEN
      Calls Say over TLS (HTTP/2), with "authorization: Bearer TOKEN" unless TOKEN is "-".
      Prints "ok <reply> trailer=<x-trailer>" or "status <code number> <details>".
"""

import sys
from concurrent import futures

import grpc


def serve(port):
    def say(request, context):
        metadata = dict(context.invocation_metadata())
        context.set_trailing_metadata((("x-trailer", "kept"),))
        user = metadata.get("x-forwarded-user", "-")
        return b"hello " + request + b" as " + user.encode()

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(target, ca, token):
    with open(ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    with grpc.secure_channel(target, credentials) as channel:
        say = channel.unary_unary("/echo.Echo/Say")
        metadata = [] if token == "-" else [("authorization", f"Bearer {token}")]
        try:
            reply, rpc = say.with_call(b"ci", metadata=metadata, timeout=10)
        except grpc.RpcError as e:
            print("status", e.code().value[0], e.details())
            return
        trailer = dict(rpc.trailing_metadata() or ()).get("x-trailer", "-")
        print("ok", reply.decode(), f"trailer={trailer}")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        call(sys.argv[2], sys.argv[3], sys.argv[4])
