"""Publish into a channel and read its history through chorus's gRPC server API.

The stubs (api_pb2.py, api_pb2_grpc.py) are generated from proto/api.proto with grpcio-tools
(see README.md) — Centrifugo's own published api.proto gives the same stubs' wire format.

    python client.py [TARGET] [CHANNEL] [DATA_JSON]

TARGET defaults to 127.0.0.1:10000, CHANNEL to chat:lobby. The API key, when the server has
`grpc_api.key`, comes from the environment variable CHORUS_GRPC_API_KEY.
"""

import json
import os
import sys

import grpc

import api_pb2
import api_pb2_grpc


def main() -> int:
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:10000"
    channel = sys.argv[2] if len(sys.argv) > 2 else "chat:lobby"
    data = sys.argv[3] if len(sys.argv) > 3 else json.dumps({"text": "hello from python"})
    key = os.environ.get("CHORUS_GRPC_API_KEY", "")
    metadata = [("authorization", f"apikey {key}")] if key else []

    with grpc.insecure_channel(target) as conn:
        api = api_pb2_grpc.CentrifugoApiStub(conn)

        # Errors come back inside the response (`error`) unless the server runs with
        # grpc_api.error_mode "transport" or the call sends x-centrifugo-error-mode: transport.
        reply = api.Publish(
            api_pb2.PublishRequest(channel=channel, data=data.encode()), metadata=metadata
        )
        if reply.HasField("error"):
            print(f"publish: error {reply.error.code}: {reply.error.message}", file=sys.stderr)
            return 1
        print(f"published into {channel}: offset {reply.result.offset} epoch {reply.result.epoch!r}")

        reply = api.History(
            api_pb2.HistoryRequest(channel=channel, limit=10, reverse=True), metadata=metadata
        )
        if reply.HasField("error"):
            print(f"history: error {reply.error.code}: {reply.error.message}", file=sys.stderr)
            return 1
        print(f"history of {channel} (newest first, top offset {reply.result.offset}):")
        for pub in reply.result.publications:
            print(f"  {pub.offset} {pub.data.decode(errors='replace')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
