//! The replication scope: the feeds within N follow hops of the local user
//! plus the feeds this node hosts for others, never a blocked one.
//!
//! Guarantees: a feed the user blocks is never in the scope, so sync neither
//! requests it nor accepts it from a peer.

use std::collections::BTreeSet;

use crate::error::Result;
use crate::identity::id::AuthorId;
use crate::node::Node;
use crate::store::replication::FeedState;
use crate::store::{graph, replication};

/// The feeds this node replicates, sorted.
pub(crate) fn compute(node: &Node, hops: u32) -> Result<Vec<AuthorId>> {
    let me = node.whoami()?;
    let mut scope: BTreeSet<AuthorId> = node.feeds_within_hops(hops)?.into_iter().collect();
    node.store().read(|c| {
        let blocked: BTreeSet<AuthorId> = graph::blocked_by(c, &me)?.into_iter().collect();
        for hosted in replication::hosted_feeds(c)? {
            if !blocked.contains(&hosted) {
                scope.insert(hosted);
            }
        }
        Ok(())
    })?;
    Ok(scope.into_iter().collect())
}

/// What this node holds of each feed of `scope`.
pub(crate) fn clock(node: &Node, scope: &[AuthorId]) -> Result<Vec<(AuthorId, FeedState)>> {
    node.store().read(|c| {
        scope
            .iter()
            .map(|a| Ok((*a, replication::feed_state(c, a)?)))
            .collect()
    })
}
