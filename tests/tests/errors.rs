//! Bad input and missing keys: the right exit status (2 usage, 65 bad input,
//! 77 locked, 1 other), a stderr message that says what to do, one JSON
//! error document on stdout with `--json`, and an unchanged store.

use std::time::{Duration, Instant};

use starling_tests::{Run, TestNode, nonce};

fn assert_fails(run: &Run, code: i32, stderr_has: &[&str]) {
    assert_eq!(
        run.code,
        Some(code),
        "expected exit {code}\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    for s in stderr_has {
        assert!(
            run.stderr.contains(s),
            "stderr lacks {s:?}:\n{}",
            run.stderr
        );
    }
    let doc = run.json();
    assert_eq!(doc["error"]["exit_code"], code, "{doc}");
}

#[test]
fn malformed_ids_are_bad_input_and_change_nothing() {
    let (node, me) = TestNode::with_identity("Ada");
    let post = node.post("hello");
    let before = node.snapshot();

    let bad_author = "stl1notavalidid";
    for args in [
        vec!["follow", bad_author],
        vec!["block", bad_author],
        vec!["feed", bad_author],
        vec!["profile", bad_author],
    ] {
        let run = node.run(&args);
        assert_fails(&run, 65, &[bad_author, "invalid author id", "hint:"]);
    }
    // An entry id where an author id belongs, and the reverse.
    let run = node.run(&["follow", &post]);
    assert_fails(&run, 65, &[&post]);
    let run = node.run(&["react", &me, "👍"]);
    assert_fails(&run, 65, &[&me, "entry"]);
    // A corrupted checksum (last character changed).
    let mut typo = post.clone();
    let last = typo.pop().expect("char");
    typo.push(if last == 'q' { 'p' } else { 'q' });
    let run = node.run(&["post", "a reply", "--reply-to", &typo]);
    assert_fails(&run, 65, &[&typo]);
    let run = node.run(&["delete", "garbage"]);
    assert_fails(&run, 65, &["garbage"]);
    let run = node.run(&["timeline", "--before", "not-a-cursor"]);
    assert_fails(&run, 65, &[]);

    assert_eq!(node.snapshot(), before, "bad input changed the store");

    // Bad input against a data dir that does not exist yet creates nothing.
    let fresh = TestNode::new();
    let missing = fresh.path().join("not-yet");
    let mut cmd = fresh.command();
    cmd.env("STARLING_DATA_DIR", &missing);
    let run = fresh.run_with(cmd, &["follow", bad_author]);
    assert_fails(&run, 65, &[bad_author]);
    assert!(!missing.exists(), "a data dir was created for bad input");
}

#[test]
fn usage_errors_exit_2() {
    let node = TestNode::new();
    for args in [
        vec!["frobnicate"],
        vec!["post"],
        vec!["timeline", "--limit", "0"],
        vec!["timeline", "--limit", "many"],
    ] {
        let mut cmd = node.command();
        cmd.args(&args);
        let out = cmd.output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        // With --json, one error document on stdout as well.
        let run = node.run(&args);
        assert_fails(&run, 2, &["error:"]);
        assert_eq!(run.json()["error"]["kind"], "usage");
    }
    let mut cmd = node.command();
    cmd.arg("--help");
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("65") && help.contains("77"),
        "exit codes in --help: {help}"
    );
}

#[test]
fn a_corrupt_import_file_is_rejected_whole() {
    let (ada, ada_id) = TestNode::with_identity("Ada");
    ada.post("one");
    ada.post("two");
    let file = ada.path().join("ada.feed");
    let file_s = file.to_str().expect("utf-8");
    ada.ok(&["export-feed", &ada_id, file_s]);
    let good = std::fs::read(&file).expect("read export");

    let (bob, _) = TestNode::with_identity("Bob");
    let before = bob.snapshot();
    let bad = bob.path().join("bad.feed");
    let bad_s = bad.to_str().expect("utf-8");

    // Flip one byte near the end (in the last entry or its payload), then
    // truncate, then plain garbage.
    let mut flipped = good.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 0x55;
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("flipped byte", flipped),
        ("truncated", good[..good.len() - 7].to_vec()),
        ("garbage", b"this is not a starling feed".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in variants {
        std::fs::write(&bad, &bytes).expect("write");
        let run = bob.run(&["import", bad_s]);
        assert_eq!(
            run.code,
            Some(65),
            "{what}: expected 65\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
        assert!(run.stderr.contains("error:"), "{what}: {}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{what}: {}", run.stderr);
    }
    std::fs::remove_file(&bad).expect("rm");
    assert_eq!(bob.snapshot(), before, "a rejected import wrote something");

    // A missing file is an ordinary failure, and also writes nothing.
    let run = bob.run(&["import", "/nonexistent/feed.bin"]);
    assert_ne!(run.code, Some(0));
    assert_eq!(bob.snapshot(), before);
}

#[test]
fn no_identity_yet_says_run_init() {
    let node = TestNode::new();
    for args in [
        vec!["whoami"],
        vec!["post", "hello"],
        vec!["recovery-phrase"],
    ] {
        let run = node.run(&args);
        assert_fails(&run, 1, &["no identity", "starling init"]);
    }
    let before = node.snapshot();
    let run = node.run(&["post", "hello"]);
    assert_fails(&run, 1, &["starling init"]);
    assert_eq!(node.snapshot(), before);
}

#[test]
fn wrong_or_missing_passphrase_is_locked() {
    let (node, _) = TestNode::with_identity("Ada");
    node.post("before");
    let before = node.snapshot();

    let mut wrong = TestNode::command(&node);
    wrong.env("STARLING_PASSPHRASE", "not the passphrase");
    let run = node.run_with(wrong, &["post", "should not appear"]);
    assert_fails(&run, 77, &["passphrase"]);

    let mut wrong = node.command();
    wrong.env("STARLING_PASSPHRASE", "not the passphrase");
    let run = node.run_with(wrong, &["recovery-phrase"]);
    assert_fails(&run, 77, &["passphrase"]);
    assert!(!run.stdout.contains("recovery_phrase\":\""));

    // No passphrase and no terminal: fails at once instead of hanging.
    let mut none = node.command();
    none.env_remove("STARLING_PASSPHRASE");
    let t0 = Instant::now();
    let run = node.run_with(none, &["post", "should not appear"]);
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_fails(&run, 77, &["STARLING_PASSPHRASE", "terminal"]);

    assert_eq!(node.snapshot(), before);
}

#[test]
fn init_twice_keeps_the_first_identity() {
    let (node, me) = TestNode::with_identity("Ada");
    let before = node.snapshot();
    let run = node.run(&["init", "--name", "Impostor"]);
    assert_fails(&run, 1, &["already has an identity"]);
    assert_eq!(node.snapshot(), before, "keyfile.json or store changed");
    assert_eq!(node.ok(&["whoami"])["author"], me.as_str());
}

#[test]
fn a_bad_recovery_phrase_is_bad_input() {
    let node = TestNode::new();
    let mut cmd = node.command();
    cmd.stdin(std::process::Stdio::piped());
    cmd.args(["--json", "init", "--restore"]);
    let mut child = cmd.spawn().expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"abandon abandon abandon abandon abandon abandon\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("24 words"), "{stderr}");
    assert!(
        !node.path().join("keyfile.json").exists(),
        "nothing is written for a bad phrase"
    );
    // And the dir still has no identity.
    assert_fails(&node.run(&["whoami"]), 1, &["starling init"]);
}

#[test]
fn insecure_key_file_works_and_warns_every_time() {
    let node = TestNode::new();
    let key = node.path().join(format!("plain-{}.key", nonce()));
    let with_key = || {
        let mut cmd = node.command();
        cmd.env_remove("STARLING_PASSPHRASE")
            .env("STARLING_INSECURE_KEY_FILE", &key);
        cmd
    };
    let run = node.run_with(with_key(), &["init", "--name", "Plain"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("INSECURE"), "{}", run.stderr);
    let hex = std::fs::read_to_string(&key).expect("key file created");
    assert_eq!(hex.trim().len(), 64);

    let run = node.run_with(with_key(), &["post", "plain post"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("INSECURE"), "warns on every use");

    // Without the key file the identity stays locked.
    let run = node.run(&["post", "no key"]);
    assert_fails(&run, 77, &["insecure-key-file"]);
}
