"""Async helpers around centrifuge-python: event recorders and bounded waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, List, Optional

from centrifuge import (
    Client,
    ClientEventHandler,
    SubscriptionEventHandler,
)


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 5.0, message: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.01)


class ClientEvents(ClientEventHandler):
    """Records every client-level event."""

    def __init__(self) -> None:
        self.connecting: List[Any] = []
        self.connected: List[Any] = []
        self.disconnected: List[Any] = []
        self.errors: List[Any] = []
        self.subscribed: List[Any] = []
        self.subscribing: List[Any] = []
        self.unsubscribed: List[Any] = []
        self.publications: List[Any] = []
        self.joins: List[Any] = []
        self.leaves: List[Any] = []

    async def on_connecting(self, ctx):
        self.connecting.append(ctx)

    async def on_connected(self, ctx):
        self.connected.append(ctx)

    async def on_disconnected(self, ctx):
        self.disconnected.append(ctx)

    async def on_error(self, ctx):
        self.errors.append(ctx)

    async def on_subscribed(self, ctx):
        self.subscribed.append(ctx)

    async def on_subscribing(self, ctx):
        self.subscribing.append(ctx)

    async def on_unsubscribed(self, ctx):
        self.unsubscribed.append(ctx)

    async def on_publication(self, ctx):
        self.publications.append(ctx)

    async def on_join(self, ctx):
        self.joins.append(ctx)

    async def on_leave(self, ctx):
        self.leaves.append(ctx)


class SubEvents(SubscriptionEventHandler):
    """Records every subscription-level event."""

    def __init__(self) -> None:
        self.subscribing: List[Any] = []
        self.subscribed: List[Any] = []
        self.unsubscribed: List[Any] = []
        self.publications: List[Any] = []
        self.joins: List[Any] = []
        self.leaves: List[Any] = []
        self.errors: List[Any] = []

    async def on_subscribing(self, ctx):
        self.subscribing.append(ctx)

    async def on_subscribed(self, ctx):
        self.subscribed.append(ctx)

    async def on_unsubscribed(self, ctx):
        self.unsubscribed.append(ctx)

    async def on_publication(self, ctx):
        self.publications.append(ctx)

    async def on_join(self, ctx):
        self.joins.append(ctx)

    async def on_leave(self, ctx):
        self.leaves.append(ctx)

    async def on_error(self, ctx):
        self.errors.append(ctx)


async def connect(
    ws_url: str, token: str, use_protobuf: bool = False, **kwargs: Any
) -> "tuple[Client, ClientEvents]":
    events = ClientEvents()
    client = Client(
        ws_url,
        events=events,
        token=token,
        use_protobuf=use_protobuf,
        proxy=None,
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.5,
        **kwargs,
    )
    await client.connect()
    await client.ready(timeout=8)
    return client, events


async def subscribe(client: Client, channel: str, **kwargs: Any) -> "tuple[Any, SubEvents]":
    events = SubEvents()
    sub = client.new_subscription(channel, events=events, **kwargs)
    await sub.subscribe()
    await sub.ready(timeout=8)
    return sub, events


async def to_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs a blocking call (cent, requests) without stalling the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    """Runs one async test body with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
