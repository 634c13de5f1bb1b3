//! Exact JSON of every method's answers, against a real in-memory node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;

use super::{call, epoch_of, node};

// ---- publish / history -----------------------------------------------------------------------

#[tokio::test]
async fn publish_twice_then_history() {
    let node = node();
    let (status, first) = call(
        &node,
        "publish",
        r#"{"channel":"chat:room","data":{"text": "hi",  "n":1.50}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let epoch = epoch_of(&first);
    assert!(!epoch.is_empty());
    assert_eq!(
        first,
        format!(r#"{{"result":{{"offset":1,"epoch":"{epoch}"}}}}"#)
    );
    let (_, second) = call(
        &node,
        "publish",
        r#"{"channel":"chat:room","b64data":"WzEsMl0=","tags":{"k":"v"}}"#,
    )
    .await;
    assert_eq!(
        second,
        format!(r#"{{"result":{{"offset":2,"epoch":"{epoch}"}}}}"#)
    );

    let (status, history) = call(&node, "history", r#"{"channel":"chat:room","limit":-1}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        history,
        format!(
            r#"{{"result":{{"publications":[{{"data":{{"text": "hi",  "n":1.50}},"offset":1}},{{"data":[1,2],"offset":2,"tags":{{"k":"v"}}}}],"epoch":"{epoch}","offset":2}}}}"#
        )
    );
    // limit 0 (the default): only the stream position, publications still present.
    let (_, top) = call(&node, "history", r#"{"channel":"chat:room"}"#).await;
    assert_eq!(
        top,
        format!(r#"{{"result":{{"publications":[],"epoch":"{epoch}","offset":2}}}}"#)
    );

    let (_, removed) = call(&node, "history_remove", r#"{"channel":"chat:room"}"#).await;
    assert_eq!(removed, r#"{"result":{}}"#);
}

#[tokio::test]
async fn publish_without_history_is_empty_result() {
    let (status, body) = call(&node(), "publish", r#"{"channel":"plain","data":"x"}"#).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"result":{}}"#)
    );
}

#[tokio::test]
async fn publish_validation_errors_are_107() {
    let node = node();
    let bad = r#"{"error":{"code":107,"message":"bad request"}}"#;
    for body in [
        r#"{"data":{}}"#,
        r#"{"channel":"","data":{}}"#,
        r#"{"channel":"chat:a"}"#,
        r#"{"channel":"chat:a","data":null}"#,
        r#"{"channel":"chat:a","b64data":"!!notbase64"}"#,
    ] {
        assert_eq!(
            call(&node, "publish", body).await,
            (StatusCode::OK, bad.to_owned()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn unknown_namespace_is_102() {
    let (status, body) = call(&node(), "publish", r#"{"channel":"nope:a","data":{}}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"error":{"code":102,"message":"unknown channel"}}"#
    );
}

#[tokio::test]
async fn history_errors() {
    let node = node();
    let (_, body) = call(&node, "history", r#"{"channel":"plain"}"#).await;
    assert_eq!(body, r#"{"error":{"code":108,"message":"not available"}}"#);
    let (_, body) = call(
        &node,
        "history",
        r#"{"channel":"chat:a","reverse":true,"since":{"offset":0,"epoch":"x"}}"#,
    )
    .await;
    assert_eq!(body, r#"{"error":{"code":107,"message":"bad request"}}"#);
    let (_, body) = call(&node, "history", r#"{"limit":1}"#).await;
    assert_eq!(body, r#"{"error":{"code":107,"message":"bad request"}}"#);
}

#[tokio::test]
async fn broadcast_reports_per_channel() {
    let node = node();
    let (status, body) = call(
        &node,
        "broadcast",
        r#"{"channels":["chat:a","nope:b","","plain"],"data":{"x":1}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let epoch = epoch_of(&call(&node, "history", r#"{"channel":"chat:a"}"#).await.1);
    assert_eq!(
        body,
        format!(
            r#"{{"result":{{"responses":[{{"result":{{"offset":1,"epoch":"{epoch}"}}}},{{"error":{{"code":102,"message":"unknown channel"}}}},{{"error":{{"code":107,"message":"bad request"}}}},{{"result":{{}}}}]}}}}"#
        )
    );
    let (_, body) = call(&node, "broadcast", r#"{"channels":[],"data":{}}"#).await;
    assert_eq!(body, r#"{"error":{"code":107,"message":"bad request"}}"#);
}

// ---- batch -----------------------------------------------------------------------------------

#[tokio::test]
async fn batch_mixes_success_and_error() {
    for parallel in [false, true] {
        let node = node();
        let body = format!(
            r#"{{"commands":[{{"publish":{{"channel":"chat:a","data":{{"n":1}}}}}},{{"publish":{{"channel":"nope:a","data":{{}}}}}},{{"connections":{{}}}},{{"presence_stats":{{"channel":"chat:a"}}}}],"parallel":{parallel}}}"#
        );
        let (status, replies) = call(&node, "batch", &body).await;
        assert_eq!(status, StatusCode::OK);
        let epoch = epoch_of(&replies);
        assert_eq!(
            replies,
            format!(
                r#"{{"replies":[{{"publish":{{"offset":1,"epoch":"{epoch}"}}}},{{"error":{{"code":102,"message":"unknown channel"}}}},{{"error":{{"code":104,"message":"method not found"}}}},{{"presence_stats":{{"num_clients":0,"num_users":0}}}}]}}"#
            )
        );
    }
}

#[tokio::test]
async fn batch_entry_with_wrong_types_refuses_the_batch() {
    let node = node();
    let body =
        r#"{"commands":[{"publish":{"channel":"chat:a","data":{}}},{"history":{"channel":5}}]}"#;
    let (status, _) = call(&node, "batch", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nothing ran: the stream is still empty.
    let (_, history) = call(&node, "history", r#"{"channel":"chat:a"}"#).await;
    assert!(history.ends_with(r#""offset":0}}"#), "{history}");
    let (_, empty) = call(&node, "batch", r#"{"commands":[]}"#).await;
    assert_eq!(empty, r#"{"replies":[]}"#);
}

// ---- the other methods -----------------------------------------------------------------------

#[tokio::test]
async fn presence_shapes() {
    let node = node();
    assert_eq!(
        call(&node, "presence", r#"{"channel":"chat:a"}"#).await.1,
        r#"{"result":{"presence":{}}}"#
    );
    assert_eq!(
        call(&node, "presence_stats", r#"{"channel":"chat:a"}"#)
            .await
            .1,
        r#"{"result":{"num_clients":0,"num_users":0}}"#
    );
    assert_eq!(
        call(&node, "presence", r#"{"channel":"plain"}"#).await.1,
        r#"{"error":{"code":108,"message":"not available"}}"#
    );
}

#[tokio::test]
async fn channels_and_info_shapes() {
    let node = node();
    assert_eq!(
        call(&node, "channels", "{}").await.1,
        r#"{"result":{"channels":{}}}"#
    );
    assert_eq!(
        call(&node, "channels", r#"{"pattern":"chat:*"}"#).await.1,
        r#"{"result":{"channels":{}}}"#
    );
    assert_eq!(
        call(&node, "channels", r#"{"pattern":"[a-"}"#).await.1,
        r#"{"error":{"code":107,"message":"bad request"}}"#
    );
    let (status, info) = call(&node, "info", "").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let n = &v["result"]["nodes"][0];
    assert_eq!(n["name"], "test-node");
    assert_eq!(n["version"], "0.0.0-test");
    assert_eq!(n["uid"].as_str(), Some(node.id()));
    for key in [
        "num_clients",
        "num_users",
        "num_subs",
        "num_channels",
        "uptime",
    ] {
        assert!(n[key].is_u64(), "{key} in {info}");
    }
}

#[tokio::test]
async fn user_methods_validate_and_succeed() {
    let node = node();
    let bad = r#"{"error":{"code":107,"message":"bad request"}}"#;
    let ok = r#"{"result":{}}"#;
    assert_eq!(
        call(&node, "subscribe", r#"{"channel":"chat:a"}"#).await.1,
        bad
    );
    assert_eq!(call(&node, "subscribe", r#"{"user":"u"}"#).await.1, bad);
    assert_eq!(
        call(
            &node,
            "subscribe",
            r#"{"user":"u","channel":"chat:a","b64info":"%"}"#
        )
        .await
        .1,
        bad
    );
    assert_eq!(
        call(
            &node,
            "subscribe",
            r#"{"user":"u","channel":"chat:a","info":{"r":1}}"#
        )
        .await
        .1,
        ok
    );
    assert_eq!(call(&node, "unsubscribe", r#"{"user":"u"}"#).await.1, bad);
    assert_eq!(
        call(&node, "unsubscribe", r#"{"user":"u","channel":"chat:a"}"#)
            .await
            .1,
        ok
    );
    assert_eq!(call(&node, "disconnect", r#"{}"#).await.1, bad);
    assert_eq!(
        call(
            &node,
            "disconnect",
            r#"{"user":"u","disconnect":{"code":1000}}"#
        )
        .await
        .1,
        bad
    );
    assert_eq!(call(&node, "disconnect", r#"{"user":"u"}"#).await.1, ok);
    assert_eq!(
        call(
            &node,
            "disconnect",
            r#"{"user":"u","disconnect":{"code":4001,"reason":"bye"}}"#
        )
        .await
        .1,
        ok
    );
}

/// The close-frame rules of `disconnect` (the core's) as the HTTP API answers them.
#[tokio::test]
async fn disconnect_codes_and_reasons_outside_the_rules_are_107() {
    let node = node();
    let bad = r#"{"error":{"code":107,"message":"bad request"}}"#;
    for code in [1, 2999, 3000, 5000, 70000] {
        let body = format!(r#"{{"user":"u","disconnect":{{"code":{code}}}}}"#);
        assert_eq!(call(&node, "disconnect", &body).await.1, bad, "{code}");
    }
    let long = format!(
        r#"{{"user":"u","disconnect":{{"code":4000,"reason":"{}"}}}}"#,
        "x".repeat(124)
    );
    assert_eq!(call(&node, "disconnect", &long).await.1, bad);
    let longest = format!(
        r#"{{"user":"u","disconnect":{{"code":4000,"reason":"{}"}}}}"#,
        "x".repeat(123)
    );
    assert_eq!(
        call(&node, "disconnect", &longest).await.1,
        r#"{"result":{}}"#
    );
}

#[tokio::test]
async fn refresh_answers_and_rpc_is_unsupported() {
    let node = node();
    let bad = r#"{"error":{"code":107,"message":"bad request"}}"#;
    assert_eq!(
        call(&node, "refresh", r#"{"user":"u"}"#).await.1,
        r#"{"result":{}}"#
    );
    assert_eq!(
        call(
            &node,
            "refresh",
            r#"{"user":"u","client":"c","session":"s","expired":false,"expire_at":4102444800,"info":{"a":1}}"#
        )
        .await
        .1,
        r#"{"result":{}}"#
    );
    assert_eq!(call(&node, "refresh", r#"{}"#).await.1, bad);
    assert_eq!(
        call(&node, "refresh", r#"{"user":"u","expire_at":-1}"#)
            .await
            .1,
        bad
    );
    assert_eq!(
        call(&node, "rpc", r#"{"method":"getUserStatus","params":{}}"#)
            .await
            .1,
        r#"{"error":{"code":104,"message":"method not found"}}"#
    );
    assert_eq!(
        call(&node, "rpc", r#"{"params":{}}"#).await.1,
        r#"{"error":{"code":107,"message":"bad request"}}"#
    );
}
