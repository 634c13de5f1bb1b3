//! Records the commit chorus is built from, for `chorus_build_info{commit}` and `--version`.
//!
//! `CHORUS_COMMIT` in the build environment wins (an image built without `.git`); otherwise
//! `git rev-parse --short=12 HEAD` in the source tree; `unknown` when neither is available.
//! Never fails the build.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=CHORUS_COMMIT");
    let commit = match std::env::var("CHORUS_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
                // Rebuild when HEAD moves (a commit, a checkout).
                println!("cargo:rerun-if-changed={dir}/HEAD");
                if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    println!("cargo:rerun-if-changed={dir}/{head_ref}");
                }
            }
            match git(&["rev-parse", "--short=12", "HEAD"]) {
                Some(c) if !c.is_empty() => c,
                _ => "unknown".to_string(),
            }
        }
    };
    println!("cargo:rustc-env=CHORUS_COMMIT={commit}");
}
