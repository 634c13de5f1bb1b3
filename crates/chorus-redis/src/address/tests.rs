use super::*;

fn plain() -> RedisTls {
    RedisTls::default()
}

fn tls_on() -> RedisTls {
    RedisTls {
        enabled: true,
        ..RedisTls::default()
    }
}

#[test]
fn direct_addresses_select_resp3_and_tls() {
    let cases = [
        ("h:6379", plain(), "redis://h:6379/?protocol=resp3"),
        (
            "redis://u:p@h:6379/2",
            plain(),
            "redis://u:p@h:6379/2?protocol=resp3",
        ),
        (
            "rediss://h:6380",
            plain(),
            "rediss://h:6380/?protocol=resp3",
        ),
        ("h:6380", tls_on(), "rediss://h:6380/?protocol=resp3"),
        (
            "redis://h:6380",
            tls_on(),
            "rediss://h:6380/?protocol=resp3",
        ),
        (
            "redis://h:1/?protocol=resp2",
            plain(),
            "redis://h:1/?protocol=resp2",
        ),
        (
            "redis://h:1/?x=1",
            plain(),
            "redis://h:1/?x=1&protocol=resp3",
        ),
        ("[::1]:6379", plain(), "redis://[::1]:6379/?protocol=resp3"),
    ];
    for (input, tls, want) in cases {
        assert_eq!(
            parse(input, &tls).unwrap(),
            Address::Direct(want.into()),
            "{input}"
        );
    }
    let insecure = RedisTls {
        enabled: true,
        insecure_skip_verify: true,
        ..RedisTls::default()
    };
    assert_eq!(
        parse("h:6380", &insecure).unwrap(),
        Address::Direct("rediss://h:6380/?protocol=resp3#insecure".into())
    );
    // Verification off only matters with TLS.
    let plain_insecure = RedisTls {
        insecure_skip_verify: true,
        ..RedisTls::default()
    };
    assert_eq!(
        parse("h:6379", &plain_insecure).unwrap(),
        Address::Direct("redis://h:6379/?protocol=resp3".into())
    );
}

#[test]
fn sentinel_addresses_parse_with_credentials_and_options() {
    let a = parse(
        "redis+sentinel://app:p%40ss@s1:26379,s2,[::1]:26380/mymaster/3?sentinel_user=sen&sentinel_password=x%2Fy&sentinel_tls=true",
        &plain(),
    )
    .unwrap();
    let Address::Sentinel(s) = a else {
        panic!("not a sentinel address")
    };
    assert_eq!(
        s.sentinels,
        vec![
            ("s1".to_string(), 26379),
            ("s2".to_string(), 26379),
            ("::1".to_string(), 26380)
        ]
    );
    assert_eq!(s.master, "mymaster");
    assert_eq!(s.db, 3);
    assert_eq!((s.user.as_str(), s.password.as_str()), ("app", "p@ss"));
    assert_eq!(
        (s.sentinel_user.as_str(), s.sentinel_password.as_str()),
        ("sen", "x/y")
    );
    assert!(s.sentinel_tls);
    assert_eq!(
        s.to_string(),
        "sentinel mymaster via s1:26379,s2:26379,::1:26380"
    );
    assert!(!format!("{s:?}").contains("p@ss"));

    let Address::Sentinel(q) =
        parse("redis+sentinel://s1:26379?sentinel_master_name=m", &plain()).unwrap()
    else {
        panic!("not a sentinel address")
    };
    assert_eq!((q.master.as_str(), q.db, q.sentinel_tls), ("m", 0, false));
}

#[test]
fn bad_addresses_are_refused_with_the_reason_and_no_password() {
    let cases = [
        ("", "empty Redis address"),
        ("unix:///tmp/r.sock", "unsupported scheme unix://"),
        (
            "redis://:secret@h:notaport",
            "port \"notaport\" is not a port number",
        ),
        ("redis+sentinel://:secret@s1:26379", "names no master"),
        ("redis+sentinel:///m", "names no Sentinel host"),
        (
            "redis+sentinel://s1/m?sentinel_password=secret&bogus=1",
            "unknown query parameter \"bogus\"",
        ),
        ("redis+sentinel://s1/m/x", "database \"x\" is not a number"),
        (
            "redis+sentinel://s1/m?sentinel_tls=maybe",
            "\"maybe\" is not a boolean",
        ),
        ("redis+sentinel://u:%zz@s1/m", "bad percent-escape"),
    ];
    for (input, want) in cases {
        let err = parse(input, &plain()).unwrap_err();
        assert!(err.contains(want), "{input}: {err}");
        assert!(!err.contains("secret"), "{input}: {err}");
    }
}

#[test]
fn redaction_hides_passwords_only() {
    assert_eq!(redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
    assert_eq!(redact("h:6379"), "h:6379");
    assert_eq!(
        redact("redis+sentinel://s1,s2/m?sentinel_password=pw&sentinel_user=u"),
        "redis+sentinel://s1,s2/m?sentinel_password=***&sentinel_user=u"
    );
}
