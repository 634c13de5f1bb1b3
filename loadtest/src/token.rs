//! Connection tokens for `--hmac-secret`: an HS256 JWT per user (`sub`, `exp`), minted with
//! `jsonwebtoken` — the crate the gateway verifies them with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// Mints the token of user `sub`, expiring `ttl` from now.
pub fn mint_hs256(
    secret: &str,
    sub: &str,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_add(ttl.as_secs());
    encode(
        &Header::new(Algorithm::HS256),
        &Claims { sub, exp },
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[derive(serde::Deserialize)]
    struct Decoded {
        sub: String,
        exp: u64,
    }

    #[test]
    fn token_verifies_with_the_secret_and_carries_sub_and_exp() {
        let t = mint_hs256("s3cret", "u7", Duration::from_secs(3600)).expect("mint");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let got = decode::<Decoded>(
            &t,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::new(Algorithm::HS256),
        )
        .expect("valid token");
        assert_eq!(got.claims.sub, "u7");
        assert!((now + 3599..=now + 3601).contains(&got.claims.exp));
        assert!(decode::<Decoded>(
            &t,
            &DecodingKey::from_secret(b"other"),
            &Validation::new(Algorithm::HS256)
        )
        .is_err());
    }
}
