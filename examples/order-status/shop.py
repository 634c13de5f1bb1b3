"""The shop backend of the order-status example: it tells one user how their order moves
along, by publishing into the user's personal channel (`personal:#<user>`) through chorus's
gRPC server API. Every connection of that user — every open tab, phone and laptop — is
subscribed to it by the server (client.subscribe_to_user_personal_channel), so each one
gets every step, and a tab that was offline recovers the steps it missed when it reconnects.

    python shop.py USER ORDER STATUS [STATUS ...]   # e.g. alice 1001 paid shipped delivered

Stubs: api_pb2.py / api_pb2_grpc.py generated from proto/api.proto (see README.md).
Environment: CHORUS_GRPC (default 127.0.0.1:10000), CHORUS_GRPC_API_KEY, STEP_INTERVAL
(seconds between steps, default 1).
"""

import json
import os
import sys
import time

import grpc

import api_pb2
import api_pb2_grpc


def personal_channel(user: str) -> str:
    return f"personal:#{user}"


def publish_step(api, metadata, user: str, order: str, status: str) -> int:
    data = json.dumps({"order": order, "status": status, "at": int(time.time() * 1000)})
    reply = api.Publish(
        api_pb2.PublishRequest(channel=personal_channel(user), data=data.encode()),
        metadata=metadata,
    )
    if reply.HasField("error"):
        print(f"{status}: error {reply.error.code}: {reply.error.message}", file=sys.stderr)
        return 1
    print(f"order {order} of {user}: {status} (offset {reply.result.offset})", flush=True)
    return 0


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    user, order, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
    target = os.environ.get("CHORUS_GRPC", "127.0.0.1:10000")
    key = os.environ.get("CHORUS_GRPC_API_KEY", "order-status-example-api-key")
    interval = float(os.environ.get("STEP_INTERVAL", "1"))
    metadata = [("authorization", f"apikey {key}")]
    with grpc.insecure_channel(target) as conn:
        api = api_pb2_grpc.CentrifugoApiStub(conn)
        for i, status in enumerate(steps):
            if i:
                time.sleep(interval)
            if publish_step(api, metadata, user, order, status):
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
