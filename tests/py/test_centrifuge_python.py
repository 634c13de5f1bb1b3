"""centrifuge-python (real SDK, JSON and Protobuf) against the chorus binary."""

from __future__ import annotations

import json
import time

import pytest
from cent import PresenceRequest, PublishRequest
from centrifuge import Client, StreamPosition
from centrifuge.exceptions import ReplyError, SubscriptionUnsubscribedError

from conftest import conn_token, sub_token, uniq
from helpers import ClientEvents, SubEvents, connect, run, subscribe, to_thread, wait_for

PROTOCOLS = [pytest.param(False, id="json"), pytest.param(True, id="protobuf")]


def enc(value, protobuf):
    """Protobuf clients publish raw bytes; JSON clients JSON values."""
    return json.dumps(value).encode() if protobuf else value


def dec(value, protobuf):
    """Protobuf clients receive payloads as raw bytes (the JSON text)."""
    if protobuf and value is not None:
        assert isinstance(value, bytes), f"protobuf payload must be bytes, got {type(value)}"
        return json.loads(value)
    return value


def publish(cent_client, channel, data):
    return cent_client.publish(PublishRequest(channel=channel, data=data))


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_connect_subscribe_publish_receive(chorus, cent_client, protobuf):
    async def body():
        a, a_ev = await connect(chorus.ws_url, conn_token("alice", info={"name": "Alice"}), protobuf)
        b, _ = await connect(chorus.ws_url, conn_token("bob"), protobuf)
        try:
            assert len(a_ev.connected) == 1
            assert a_ev.connected[0].client
            ch = uniq("chat:py")
            sub_a, ev_a = await subscribe(a, ch)
            sub_b, ev_b = await subscribe(b, ch)
            assert ev_a.subscribed[0].recoverable is True
            assert ev_a.subscribed[0].positioned is True
            assert ev_a.subscribed[0].stream_position.offset == 0

            # From the server API.
            res = await to_thread(publish, cent_client, ch, {"text": "api"})
            assert res.offset == 1
            assert res.epoch == ev_a.subscribed[0].stream_position.epoch
            await wait_for(lambda: len(ev_a.publications) == 1 and len(ev_b.publications) == 1)
            assert dec(ev_a.publications[0].pub.data, protobuf) == {"text": "api"}
            assert ev_a.publications[0].pub.offset == 1
            assert ev_a.publications[0].pub.info is None

            # From another client.
            await sub_a.publish(enc({"text": "from alice"}, protobuf))
            await wait_for(lambda: len(ev_b.publications) == 2, message="client publication")
            p = ev_b.publications[1].pub
            assert dec(p.data, protobuf) == {"text": "from alice"}
            assert p.offset == 2
            assert p.info.user == "alice"
            assert p.info.client == a_ev.connected[0].client
            assert dec(p.info.conn_info, protobuf) == {"name": "Alice"}
        finally:
            await a.disconnect()
            await b.disconnect()

    run(body())


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_presence_and_stats(chorus, protobuf):
    async def body():
        a, a_ev = await connect(chorus.ws_url, conn_token("alice", info={"k": 1}), protobuf)
        b1, b1_ev = await connect(chorus.ws_url, conn_token("bob"), protobuf)
        b2, b2_ev = await connect(chorus.ws_url, conn_token("bob"), protobuf)
        try:
            ch = uniq("chat:pres")
            sub, _ = await subscribe(a, ch)
            await subscribe(b1, ch)
            await subscribe(b2, ch)
            pres = await sub.presence()
            ids = {e.connected[0].client: u for e, u in ((a_ev, "alice"), (b1_ev, "bob"), (b2_ev, "bob"))}
            assert set(pres.clients) == set(ids)
            for cid, user in ids.items():
                assert pres.clients[cid].user == user
                assert pres.clients[cid].client == cid
            assert dec(pres.clients[a_ev.connected[0].client].conn_info, protobuf) == {"k": 1}
            stats = await sub.presence_stats()
            assert (stats.num_clients, stats.num_users) == (3, 2)
        finally:
            for c in (a, b1, b2):
                await c.disconnect()

    run(body())


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_join_leave(chorus, protobuf):
    async def body():
        a, _ = await connect(chorus.ws_url, conn_token("alice"), protobuf)
        b, b_ev = await connect(chorus.ws_url, conn_token("bob", info={"b": True}), protobuf)
        try:
            ch = uniq("chat:jl")
            _, ev = await subscribe(a, ch)
            sub_b, _ = await subscribe(b, ch)
            bid = b_ev.connected[0].client
            await wait_for(lambda: any(j.info.user == "bob" for j in ev.joins), message="join")
            j = next(j for j in ev.joins if j.info.user == "bob")
            assert j.info.client == bid
            assert dec(j.info.conn_info, protobuf) == {"b": True}
            await sub_b.unsubscribe()
            await wait_for(lambda: any(x.info.user == "bob" for x in ev.leaves), message="leave")
            assert next(x for x in ev.leaves if x.info.user == "bob").info.client == bid
        finally:
            await a.disconnect()
            await b.disconnect()

    run(body())


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_history(chorus, cent_client, protobuf):
    async def body():
        ch = uniq("chat:hist")
        epoch = None
        for n in range(1, 6):
            r = await to_thread(publish, cent_client, ch, {"n": n})
            assert r.offset == n
            epoch = r.epoch
        c, _ = await connect(chorus.ws_url, conn_token("alice"), protobuf)
        try:
            sub, _ = await subscribe(c, ch)
            h = await sub.history(limit=0)
            assert (h.publications, h.offset, h.epoch) == ([], 5, epoch)
            h = await sub.history(limit=2)
            assert [p.offset for p in h.publications] == [1, 2]
            assert [dec(p.data, protobuf)["n"] for p in h.publications] == [1, 2]
            h = await sub.history(limit=2, reverse=True)
            assert [p.offset for p in h.publications] == [5, 4]
            h = await sub.history(limit=10, since=StreamPosition(offset=2, epoch=epoch))
            assert [p.offset for p in h.publications] == [3, 4, 5]
            assert h.offset == 5 and h.epoch == epoch
            with pytest.raises(ReplyError) as e:
                await c.history(ch, limit=10, since=StreamPosition(offset=2, epoch="wrongep1"))
            assert e.value.code == 112
        finally:
            await c.disconnect()

    run(body())


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_recovery_after_reconnect(chorus, cent_client, protobuf):
    async def body():
        c, _ = await connect(chorus.ws_url, conn_token("alice"), protobuf)
        try:
            ch = uniq("chat:rec")
            sub, ev = await subscribe(c, ch)
            await to_thread(publish, cent_client, ch, {"n": 1})
            await wait_for(lambda: len(ev.publications) == 1, message="first publication")
            await c.disconnect()
            for n in range(2, 5):
                await to_thread(publish, cent_client, ch, {"n": n})
            await c.connect()
            await wait_for(lambda: len(ev.subscribed) == 2, message="resubscribed")
            ctx = ev.subscribed[1]
            assert ctx.was_recovering is True
            assert ctx.recovered is True
            await wait_for(lambda: len(ev.publications) == 4, message="3 recovered")
            await to_thread(publish, cent_client, ch, {"n": 5})
            await wait_for(lambda: len(ev.publications) == 5, message="live after recovery")
            assert [dec(p.pub.data, protobuf)["n"] for p in ev.publications] == [1, 2, 3, 4, 5]
            assert [p.pub.offset for p in ev.publications] == [1, 2, 3, 4, 5]
        finally:
            await c.disconnect()

    run(body())


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_recovery_window_exceeded(chorus, cent_client, protobuf):
    async def body():
        c, _ = await connect(chorus.ws_url, conn_token("alice"), protobuf)
        try:
            ch = uniq("small:win")
            _, ev = await subscribe(c, ch)
            await to_thread(publish, cent_client, ch, {"n": 1})
            await wait_for(lambda: len(ev.publications) == 1)
            await c.disconnect()
            for n in range(2, 7):
                await to_thread(publish, cent_client, ch, {"n": n})
            await c.connect()
            await wait_for(lambda: len(ev.subscribed) == 2, message="resubscribed")
            ctx = ev.subscribed[1]
            assert ctx.was_recovering is True
            assert ctx.recovered is False
            assert ctx.stream_position.offset == 6
            await to_thread(publish, cent_client, ch, {"n": 7})
            await wait_for(lambda: len(ev.publications) == 2, message="live publication")
            assert [p.pub.offset for p in ev.publications] == [1, 7]
        finally:
            await c.disconnect()

    run(body())


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_subscribe_errors_and_subscription_token(chorus, cent_client, protobuf):
    async def body():
        c, c_ev = await connect(chorus.ws_url, conn_token("alice"), protobuf)
        try:
            for channel, code in ((uniq("nosuchns:x"), 102), (uniq("private:x"), 103)):
                ev = SubEvents()
                sub = c.new_subscription(channel, events=ev)
                await sub.subscribe()
                with pytest.raises(SubscriptionUnsubscribedError):
                    await sub.ready(timeout=5)
                await wait_for(lambda: len(ev.unsubscribed) == 1, message=f"unsubscribed {code}")
                assert ev.unsubscribed[0].code == code
            # A subscription token opens the private namespace; its info is the chan_info.
            ch = uniq("private:tok")
            await subscribe(c, ch, token=sub_token("alice", ch, info={"r": 1}))
            pres = await to_thread(cent_client.presence, PresenceRequest(channel=ch))
            cid = c_ev.connected[0].client
            assert list(pres.presence) == [cid]
            assert pres.presence[cid].user == "alice"
            assert pres.presence[cid].chan_info == {"r": 1}
        finally:
            await c.disconnect()

    run(body())


@pytest.mark.parametrize("protobuf", PROTOCOLS)
def test_invalid_and_expired_tokens(chorus, protobuf):
    async def body():
        ev = ClientEvents()
        bad = Client(
            chorus.ws_url,
            events=ev,
            token=conn_token("m", secret="wrong-secret-long-enough-for-hs256-keys"),
            use_protobuf=protobuf,
            proxy=None,
        )
        await bad.connect()
        await wait_for(lambda: len(ev.disconnected) == 1, message="disconnected")
        assert ev.disconnected[0].code == 3500

        calls = []

        async def get_token():
            calls.append(1)
            return conn_token("alice", exp=int(time.time()) + 3600)

        ev2 = ClientEvents()
        c = Client(
            chorus.ws_url,
            events=ev2,
            token=conn_token("alice", exp=int(time.time()) - 60),
            get_token=get_token,
            use_protobuf=protobuf,
            proxy=None,
            min_reconnect_delay=0.05,
            max_reconnect_delay=0.5,
        )
        try:
            await c.connect()
            await c.ready(timeout=8)
            assert len(calls) == 1
            codes = [e.error.code for e in ev2.errors if isinstance(e.error, ReplyError)]
            assert codes == [109]
            assert len(ev2.connected) == 1
        finally:
            await c.disconnect()

    run(body())


def test_server_side_subscriptions_from_jwt(chorus, cent_client):
    async def body():
        ch = uniq("chat:srv")
        c, ev = await connect(chorus.ws_url, conn_token("carol", channels=[ch]))
        try:
            await wait_for(lambda: len(ev.subscribed) == 1, message="server-side subscribed")
            assert ev.subscribed[0].channel == ch
            assert ev.subscribed[0].recoverable is True
            await to_thread(publish, cent_client, ch, {"srv": 1})
            await wait_for(lambda: len(ev.publications) == 1, message="server-side publication")
            assert ev.publications[0].channel == ch
            assert ev.publications[0].pub.data == {"srv": 1}
            assert ev.publications[0].pub.offset == 1
        finally:
            await c.disconnect()

    run(body())
