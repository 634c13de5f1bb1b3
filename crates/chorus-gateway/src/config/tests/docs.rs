//! `docs/config.md` against the code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// Every config key has a row in `docs/config.md`, in the table of its section: a key added
/// without its documentation fails here.
#[test]
fn every_key_is_documented() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let Ok(doc) = std::fs::read_to_string(doc) else {
        return;
    };
    let mut missing = Vec::new();
    for leaf in leaf_paths() {
        let (section, key) = leaf.path.rsplit_once('.').unwrap_or(("", &leaf.path));
        // Channel options are documented once for all namespaces; the `without_namespace`
        // copy is the same table.
        let section = section.replace("channel.without_namespace", "channel.namespaces");
        let heading = section
            .split('.')
            .next_back()
            .filter(|s| !s.is_empty())
            .unwrap_or(key);
        // `allow_publish_for_subscriber` / `_for_client` / `_for_anonymous` rows.
        let short = key
            .rfind("_for_")
            .map(|i| (&key[..i + 5], format!("`{}`", &key[i..])));
        // Keys of a nested object may be written with their parent
        // (`command_rate_limit.rate`).
        let parent = section.rsplit('.').next().unwrap_or_default();
        let nested = format!("`{parent}.{key}`");
        let documented = doc.lines().filter(|l| l.starts_with("| `")).any(|l| {
            l.contains(&format!("`{key}`"))
                || l.contains(&nested)
                || short
                    .as_ref()
                    .is_some_and(|(base, suffix)| l.contains(base) && l.contains(suffix.as_str()))
        });
        let in_section = doc.contains(&format!("`{section}`"))
            || doc.contains(&format!("`{heading}`"))
            || doc.contains(&nested);
        if !documented || !in_section {
            missing.push(leaf.path);
        }
    }
    assert!(missing.is_empty(), "undocumented config keys: {missing:?}");
}

/// `docs/config.md` shows the embedded default and a production example; keep them true.
#[test]
fn docs_examples_match_the_code() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let Ok(doc) = std::fs::read_to_string(doc) else {
        return;
    };
    let block = |lang: &str| {
        let start = doc.find(&format!("```{lang}\n")).unwrap() + lang.len() + 4;
        let len = doc[start..].find("```").unwrap();
        doc[start..start + len].to_string()
    };
    let yaml = block("yaml").replace(
        "<random 64 hex chars>",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    let loaded = load_text("embedded.yaml", &yaml).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let mut expected = Config::embedded_default();
    expected.client.token.hmac_secret_key =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into();
    assert_eq!(loaded.config, expected);

    // The example's placeholders warn as placeholders; filled in, it loads clean.
    let template = load_text("production.json", &block("json")).unwrap();
    assert!(
        template
            .warnings
            .iter()
            .any(|w| w.contains("looks like a placeholder")),
        "{:?}",
        template.warnings
    );
    let json = block("json")
        .replace(
            "<at least 32 random bytes>",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
        )
        .replace("<random api key>", "b5bb9d8014a0f9b1d61e21e796d78dcc");
    let loaded = load_text("production.json", &json).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    loaded.config.validate().unwrap();
    assert!(!loaded.config.client.options.insecure);
}
