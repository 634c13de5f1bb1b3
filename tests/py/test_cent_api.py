"""The HTTP server API driven by the real `cent` client (every method), plus raw HTTP edge cases."""

from __future__ import annotations

import time

import pytest
import requests
from cent import (
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    Client as CentClient,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.exceptions import CentApiResponseError, CentUnauthorizedError

from conftest import conn_token, uniq
from helpers import connect, run, subscribe, to_thread, wait_for


def test_publish_and_history(cent_client):
    ch = uniq("chat:api")
    results = [cent_client.publish(PublishRequest(channel=ch, data={"n": n})) for n in (1, 2, 3)]
    assert [r.offset for r in results] == [1, 2, 3]
    epoch = results[0].epoch
    assert isinstance(epoch, str) and epoch
    assert {r.epoch for r in results} == {epoch}

    tagged = cent_client.publish(PublishRequest(channel=ch, data={"n": 4}, tags={"kind": "t"}))
    assert tagged.offset == 4

    skipped = cent_client.publish(PublishRequest(channel=ch, data={"n": 0}, skip_history=True))
    assert skipped.offset == 0

    h = cent_client.history(HistoryRequest(channel=ch, limit=-1))
    assert [p.offset for p in h.publications] == [1, 2, 3, 4]
    assert [p.data for p in h.publications] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert h.publications[3].tags == {"kind": "t"}
    assert h.publications[0].tags in (None, {})
    assert (h.offset, h.epoch) == (4, epoch)

    h = cent_client.history(HistoryRequest(channel=ch))
    assert (h.publications, h.offset, h.epoch) == ([], 4, epoch)

    h = cent_client.history(HistoryRequest(channel=ch, limit=2, reverse=True))
    assert [p.offset for p in h.publications] == [4, 3]

    h = cent_client.history(
        HistoryRequest(channel=ch, limit=10, since=StreamPosition(offset=2, epoch=epoch))
    )
    assert [p.offset for p in h.publications] == [3, 4]

    with pytest.raises(CentApiResponseError) as e:
        cent_client.history(
            HistoryRequest(channel=ch, limit=10, since=StreamPosition(offset=2, epoch="wrongep1"))
        )
    assert e.value.code == 112


def test_publish_errors(cent_client):
    with pytest.raises(CentApiResponseError) as e:
        cent_client.publish(PublishRequest(channel=uniq("nosuchns:x"), data={}))
    assert e.value.code == 102
    with pytest.raises(CentApiResponseError) as e:
        cent_client.publish(PublishRequest(channel="", data={}))
    assert e.value.code == 107
    with pytest.raises(CentApiResponseError) as e:
        cent_client.history(HistoryRequest(channel=uniq("nohist:x"), limit=10))
    assert e.value.code == 108
    with pytest.raises(CentApiResponseError) as e:
        cent_client.presence(PresenceRequest(channel=uniq("nohist:x")))
    assert e.value.code == 108


def test_broadcast(chorus, cent_client):
    async def body():
        c, _ = await connect(chorus.ws_url, conn_token("alice"))
        try:
            a, b = uniq("chat:bca"), uniq("chat:bcb")
            _, ev_a = await subscribe(c, a)
            _, ev_b = await subscribe(c, b)
            res = await to_thread(
                cent_client.broadcast, BroadcastRequest(channels=[a, b], data={"all": True})
            )
            assert len(res.responses) == 2
            for r in res.responses:
                assert r.error is None
                assert r.result.offset == 1
            await wait_for(lambda: len(ev_a.publications) == 1 and len(ev_b.publications) == 1)
            assert ev_a.publications[0].pub.data == {"all": True}
            assert ev_b.publications[0].pub.data == {"all": True}

            # One bad channel fails alone.
            res = await to_thread(
                cent_client.broadcast,
                BroadcastRequest(channels=[a, uniq("nosuchns:x")], data={"n": 2}),
            )
            assert res.responses[0].error is None and res.responses[0].result.offset == 2
            assert res.responses[1].error.code == 102
        finally:
            await c.disconnect()

    run(body())


def test_presence_stats_channels_info(start_chorus):
    srv = start_chorus()
    api = CentClient(srv.api_url, srv.api_key, timeout=10)

    async def body():
        a, a_ev = await connect(srv.ws_url, conn_token("alice", info={"a": 1}))
        b, b_ev = await connect(srv.ws_url, conn_token("bob"))
        try:
            room, other = "chat:room", "lonely"
            await subscribe(a, room)
            await subscribe(b, room)
            await subscribe(a, other)
            aid, bid = a_ev.connected[0].client, b_ev.connected[0].client

            pres = await to_thread(api.presence, PresenceRequest(channel=room))
            assert set(pres.presence) == {aid, bid}
            assert pres.presence[aid].user == "alice"
            assert pres.presence[aid].client == aid
            assert pres.presence[aid].conn_info == {"a": 1}
            assert pres.presence[bid].user == "bob"

            stats = await to_thread(api.presence_stats, PresenceStatsRequest(channel=room))
            assert (stats.num_clients, stats.num_users) == (2, 2)
            empty = await to_thread(api.presence_stats, PresenceStatsRequest(channel="chat:empty"))
            assert (empty.num_clients, empty.num_users) == (0, 0)

            chans = await to_thread(api.channels, ChannelsRequest())
            assert {k: v.num_clients for k, v in chans.channels.items()} == {room: 2, other: 1}
            chans = await to_thread(api.channels, ChannelsRequest(pattern="chat:*"))
            assert {k: v.num_clients for k, v in chans.channels.items()} == {room: 2}

            info = await to_thread(api.info, InfoRequest())
            assert len(info.nodes) == 1
            node = info.nodes[0]
            assert node.uid and node.name
            assert node.num_clients == 2
            assert node.num_users == 2
            assert node.num_channels == 2
            assert node.num_subs == 3
        finally:
            await a.disconnect()
            await b.disconnect()

    try:
        run(body())
    finally:
        api.close()


def test_server_subscribe_unsubscribe_disconnect(chorus, cent_client):
    async def body():
        user = uniq("dave")
        c, ev = await connect(chorus.ws_url, conn_token(user))
        other, other_ev = await connect(chorus.ws_url, conn_token(user))
        try:
            ch = uniq("chat:srvsub")
            cid = ev.connected[0].client
            # Subscribe only the first connection of the user (client given).
            await to_thread(
                cent_client.subscribe, SubscribeRequest(user=user, channel=ch, client=cid)
            )
            await wait_for(lambda: len(ev.subscribed) == 1, message="server-side subscribe push")
            assert ev.subscribed[0].channel == ch
            await to_thread(cent_client.publish, PublishRequest(channel=ch, data={"x": 1}))
            await wait_for(lambda: len(ev.publications) == 1, message="publication")
            assert ev.publications[0].pub.data == {"x": 1}
            assert other_ev.subscribed == [] and other_ev.publications == []

            stats = await to_thread(cent_client.presence_stats, PresenceStatsRequest(channel=ch))
            assert (stats.num_clients, stats.num_users) == (1, 1)

            await to_thread(cent_client.unsubscribe, UnsubscribeRequest(user=user, channel=ch))
            await wait_for(lambda: len(ev.unsubscribed) == 1, message="server-side unsubscribe")
            assert ev.unsubscribed[0].channel == ch
            stats = await to_thread(cent_client.presence_stats, PresenceStatsRequest(channel=ch))
            assert (stats.num_clients, stats.num_users) == (0, 0)

            # Disconnect one connection with a custom terminal code, then the user (3503).
            await to_thread(
                cent_client.disconnect,
                DisconnectRequest(
                    user=user, client=other_ev.connected[0].client,
                    disconnect=Disconnect(code=4501, reason="bye"),
                ),
            )
            await wait_for(lambda: len(other_ev.disconnected) == 1, message="custom disconnect")
            assert other_ev.disconnected[0].code == 4501
            assert ev.disconnected == []

            await to_thread(cent_client.disconnect, DisconnectRequest(user=user))
            await wait_for(lambda: len(ev.disconnected) == 1, message="default disconnect")
            assert ev.disconnected[0].code == 3503
        finally:
            await c.disconnect()
            await other.disconnect()

    run(body())


def test_refresh(chorus, cent_client):
    """Server-side refresh: `expired` closes one connection with 3005 (the SDK reconnects, as
    for any 3000-3499 code); a future `expire_at` leaves the connection open."""

    async def body():
        user = uniq("erin")
        c, ev = await connect(chorus.ws_url, conn_token(user))
        other, other_ev = await connect(chorus.ws_url, conn_token(user))
        try:
            later = int(time.time()) + 3600
            result = await to_thread(
                cent_client.refresh, RefreshRequest(user=user, expire_at=later)
            )
            assert result.model_dump(exclude_none=True) == {}
            first = ev.connected[0].client
            await to_thread(
                cent_client.refresh, RefreshRequest(user=user, client=first, expired=True)
            )
            await wait_for(
                lambda: any(x.code == 3005 for x in ev.connecting), message="3005 on refresh"
            )
            transition = next(x for x in ev.connecting if x.code == 3005)
            assert transition.reason == "connection expired"
            await wait_for(lambda: len(ev.connected) == 2, message="reconnect after 3005")
            assert ev.connected[1].client != first
            assert [x.code for x in other_ev.connecting if x.code == 3005] == []
            assert other_ev.disconnected == []
        finally:
            await c.disconnect()
            await other.disconnect()

    run(body())
    with pytest.raises(CentApiResponseError) as e:
        cent_client.refresh(RefreshRequest(user=""))
    assert e.value.code == 107


def test_history_remove(cent_client):
    ch = uniq("chat:hrm")
    for n in range(3):
        cent_client.publish(PublishRequest(channel=ch, data={"n": n}))
    assert len(cent_client.history(HistoryRequest(channel=ch, limit=-1)).publications) == 3
    res = cent_client.history_remove(HistoryRemoveRequest(channel=ch))
    assert res.model_dump() == {}
    assert cent_client.history(HistoryRequest(channel=ch, limit=-1)).publications == []


def test_batch(cent_client):
    ch = uniq("chat:batch")
    res = cent_client.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel=ch, data={"b": 1}),
                PublishRequest(channel=ch, data={"b": 2}),
                HistoryRequest(channel=ch, limit=-1),
                PresenceStatsRequest(channel=ch),
            ]
        )
    )
    assert len(res.replies) == 4
    p1, p2, hist, stats = res.replies
    assert (p1.offset, p2.offset) == (1, 2)
    assert p1.epoch == p2.epoch == hist.epoch
    assert [p.data for p in hist.publications] == [{"b": 1}, {"b": 2}]
    assert (stats.num_clients, stats.num_users) == (0, 0)

    # Raw: parallel batch, replies keyed by method at top level (not wrapped in result).
    r = requests.post(
        f"{cent_client._api_url}/batch",
        json={"commands": [{"publish": {"channel": ch, "data": {"b": 3}}}, {"info": {}}], "parallel": True},
        headers={"X-API-Key": cent_client._api_key},
        timeout=10,
    )
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["replies"]
    assert body["replies"][0] == {"publish": {"offset": 3, "epoch": p1.epoch}}
    assert len(body["replies"][1]["info"]["nodes"]) == 1


def test_wrong_api_key(chorus):
    bad = CentClient(chorus.api_url, "not-the-key", timeout=10)
    try:
        with pytest.raises(CentUnauthorizedError):
            bad.publish(PublishRequest(channel=uniq("chat:x"), data={}))
    finally:
        bad.close()
    r = requests.post(f"{chorus.api_url}/publish", json={"channel": "x", "data": {}}, timeout=10)
    assert r.status_code == 401
    # The other accepted forms of the key.
    r = requests.post(
        f"{chorus.api_url}/info", json={}, headers={"Authorization": f"apikey {chorus.api_key}"}, timeout=10
    )
    assert r.status_code == 200 and "nodes" in r.json()["result"]


def test_malformed_body_is_400(chorus):
    for body in (b"{not json", b"[1,2", b"\xff\xfe"):
        r = requests.post(
            f"{chorus.api_url}/publish",
            data=body,
            headers={"X-API-Key": chorus.api_key, "Content-Type": "application/json"},
            timeout=10,
        )
        assert r.status_code == 400, (body, r.status_code, r.text)
    # The server still answers afterwards.
    r = requests.post(
        f"{chorus.api_url}/publish",
        json={"channel": uniq("chat:after"), "data": {"ok": 1}},
        headers={"X-API-Key": chorus.api_key},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.json()["result"]["offset"] == 1


def test_health_ready_metrics(chorus):
    assert requests.get(f"{chorus.url}/health", timeout=10).status_code == 200
    assert requests.get(f"{chorus.url}/ready", timeout=10).status_code == 200
    m = requests.get(f"{chorus.url}/metrics", timeout=10)
    assert m.status_code == 200
    assert "# TYPE" in m.text
