//! Test helpers: nodes in temp dirs, foreign authors that sign entries, and
//! a dump of every table to prove a rejected write changed nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use tempfile::TempDir;

use crate::feed::{Entry, Payload, Post};
use crate::identity::at_rest::InMemoryKeyProvider;
use crate::identity::id::{AuthorId, EntryId};
use crate::node::{IncomingEntry, Node};
use crate::store::Store;

/// A fresh node with an identity, in its own temp dir.
pub fn node() -> (TempDir, Node) {
    let (dir, node) = bare_node();
    node.create_identity(Some("me")).unwrap();
    (dir, node)
}

/// A fresh node without identity.
pub fn bare_node() -> (TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), Arc::new(InMemoryKeyProvider::random().unwrap())).unwrap();
    (dir, node)
}

/// A foreign author producing a valid chain.
pub struct Author {
    pub key: SigningKey,
    pub last: Option<Entry>,
    pub ts: u64,
}

impl Author {
    pub fn new(n: u8) -> Author {
        Author {
            key: SigningKey::from_bytes(&[n; 32]),
            last: None,
            ts: crate::store::now_ms() - 3_600_000,
        }
    }

    pub fn id(&self) -> AuthorId {
        AuthorId::from_bytes(self.key.verifying_key().to_bytes())
    }

    /// Signs `payload` as the next entry (does not ingest it).
    pub fn next(&mut self, payload: &Payload) -> (Entry, IncomingEntry) {
        let bytes = payload.encode().unwrap();
        self.ts += 1000;
        let (seq, prev) = match &self.last {
            Some(e) => (e.seq + 1, Some(e.id())),
            None => (1, None),
        };
        let entry = Entry::sign(&self.key, seq, prev, self.ts, &bytes);
        self.last = Some(entry.clone());
        (
            entry.clone(),
            IncomingEntry {
                entry_bytes: entry.encode(),
                payload: Some(bytes),
            },
        )
    }

    pub fn post(&mut self, text: &str) -> (EntryId, IncomingEntry) {
        let (e, inc) = self.next(&post(text));
        (e.id(), inc)
    }
}

pub fn post(text: &str) -> Payload {
    Payload::Post(Post {
        text: text.into(),
        ..Default::default()
    })
}

pub fn reply(text: &str, parent: EntryId, root: EntryId) -> Payload {
    Payload::Post(Post {
        text: text.into(),
        reply_to: Some(parent),
        root: Some(root),
        ..Default::default()
    })
}

/// Every row of every table, as text: equal dumps mean an unchanged store.
pub fn dump(store: &Store) -> String {
    store
        .read(|c| {
            let mut names: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            names.retain(|n| !n.starts_with("sqlite_"));
            let mut out = String::new();
            for name in names {
                let mut stmt = c.prepare(&format!("SELECT * FROM \"{name}\""))?;
                let cols = stmt.column_count();
                let mut rows: Vec<String> = stmt
                    .query_map([], |r| {
                        let mut s = String::new();
                        for i in 0..cols {
                            s.push_str(&format!("{:?}|", r.get_ref(i)?));
                        }
                        Ok(s)
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                rows.sort();
                out.push_str(&format!("{name}:{}\n{}\n", rows.len(), rows.join("\n")));
            }
            Ok(out)
        })
        .unwrap()
}
