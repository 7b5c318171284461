//! Smoke test of the built `starling` binary's help. Besides checking that
//! every command is listed, having an integration test here makes
//! `cargo test --workspace` build the `starling` binary with the same
//! feature resolution as the tests, so the `starling-tests` crate can use it
//! (`STARLING_TESTS_NO_BUILD=1` in `scripts/test-all`) without a second build.

use std::process::Command;

#[test]
fn help_lists_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("--help")
        .output()
        .expect("starling runs");
    assert!(out.status.success(), "--help exits 0");
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "init",
        "post",
        "timeline",
        "serve",
        "import",
        "export-feed",
        "search",
    ] {
        assert!(help.contains(command), "--help lists `{command}`:\n{help}");
    }
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("no-such-command")
        .output()
        .expect("starling runs");
    assert_eq!(out.status.code(), Some(2));
}
