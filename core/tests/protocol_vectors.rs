//! Checks the hex test vectors in docs/PROTOCOL.md against this
//! implementation, so the spec and the code cannot drift apart.

use ed25519_dalek::SigningKey;
use starling_core::feed::{Entry, Payload, Post};
use starling_core::{AuthorId, EntryId};

/// RFC 8032, section 7.1, TEST 1 secret key: a key anyone can reproduce.
const SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn computed() -> Vec<(String, String)> {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&hex::decode(SECRET).expect("constant"));
    let key = SigningKey::from_bytes(&seed);
    let author = AuthorId(key.verifying_key().to_bytes());

    let payload1 = Payload::Post(Post {
        text: "hello, flock".into(),
        ..Post::default()
    })
    .encode()
    .expect("within limits");
    let entry1 = Entry::sign(&key, 1, None, 1_700_000_000_000, &payload1);

    let followed = AuthorId([0x11; 32]);
    let payload2 = Payload::Follow(followed).encode().expect("within limits");
    let entry2 = Entry::sign(&key, 2, Some(entry1.id()), 1_700_000_000_500, &payload2);

    let payload3 = Payload::Post(Post {
        text: "a reply".into(),
        reply_to: Some(entry1.id()),
        root: Some(entry1.id()),
        mentions: vec![followed],
        attachments: vec![],
    })
    .encode()
    .expect("within limits");

    vec![
        ("author".into(), author.to_string()),
        ("author-hex".into(), hex::encode(author.as_bytes())),
        ("payload-1".into(), hex::encode(&payload1)),
        ("entry-1".into(), hex::encode(entry1.encode())),
        ("entry-1-id".into(), entry1.id().to_string()),
        ("payload-2".into(), hex::encode(&payload2)),
        ("entry-2".into(), hex::encode(entry2.encode())),
        ("entry-2-id".into(), entry2.id().to_string()),
        ("payload-3".into(), hex::encode(&payload3)),
        ("entry-id-zero".into(), EntryId([0; 32]).to_string()),
    ]
}

fn documented() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md is readable");
    let mut out = Vec::new();
    let mut in_block = false;
    for line in doc.lines() {
        if line.trim() == "```vectors" {
            in_block = true;
        } else if in_block && line.trim() == "```" {
            in_block = false;
        } else if in_block && let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[test]
fn protocol_md_vectors_match_the_implementation() {
    let computed = computed();
    if std::env::var_os("STARLING_PRINT_VECTORS").is_some() {
        for (k, v) in &computed {
            println!("{k}: {v}");
        }
    }
    assert_eq!(
        documented(),
        computed,
        "docs/PROTOCOL.md vectors differ from the implementation"
    );
}

#[test]
fn documented_entries_decode_and_verify() {
    for (k, v) in documented() {
        if k.starts_with("entry-") && !k.contains("id") {
            let bytes = hex::decode(&v).expect("vector is hex");
            let entry = Entry::decode(&bytes).expect("vector decodes");
            entry.verify_signature().expect("vector signature verifies");
            assert_eq!(entry.encode(), bytes);
        }
        if k.starts_with("payload-") {
            let bytes = hex::decode(&v).expect("vector is hex");
            let payload = Payload::decode(&bytes).expect("vector decodes");
            assert_eq!(payload.encode().expect("valid"), bytes);
        }
    }
}
