//! Group membership as a hash-linked chain of signed control entries
//! (create, add, remove, promote admin), and the deterministic merge that
//! turns any set of them into one membership view.
//!
//! Guarantees: an entry is accepted only with a valid strict Ed25519
//! signature by its signer over a domain-separated encoding and a `prev`
//! naming an entry already held; an entry signed by someone who is not an
//! admin at its place in the merged order has no effect; two replicas
//! holding the same entries compute the same members, admins and epoch,
//! whatever order the entries arrived in.
//!
//! Merge: the entries form a tree rooted at the create entry (each names its
//! predecessor). They are applied in topological order; among entries whose
//! predecessor has been applied, removals go first, then promotions, then
//! additions, ties broken by entry hash. So a removal wins over a concurrent
//! action of the removed admin, and an addition of X is ignored if a removal
//! of X that the adder had not seen (not an ancestor of the addition) was
//! applied: removals win over concurrent re-additions.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::error::{MResult, MessagingError};
use crate::encoding::{Reader, Writer};
use crate::identity::id::AuthorId;
use crate::identity::keys::{Identity, verify_strict};

/// Domain-separation prefix of control entry signatures.
pub const CONTROL_CONTEXT: &[u8] = b"starling/group-control/v1";
/// Most members of a group.
pub const MAX_MEMBERS: usize = 50;
/// Most control entries a group may accumulate.
pub const MAX_CONTROL_ENTRIES: usize = 2000;
/// Longest group name, in UTF-8 bytes.
pub const GROUP_NAME_MAX: usize = 64;

/// What a control entry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum ControlKind {
    /// Creates the group; signer = target = first admin.
    Create = 1,
    /// Adds `target` as a member.
    Add = 2,
    /// Removes `target` (an admin, or the target leaving).
    Remove = 3,
    /// Makes member `target` an admin.
    Promote = 4,
}

impl ControlKind {
    fn from_u8(v: u8) -> MResult<Self> {
        Ok(match v {
            1 => ControlKind::Create,
            2 => ControlKind::Add,
            3 => ControlKind::Remove,
            4 => ControlKind::Promote,
            _ => {
                return Err(crate::encoding::DecodeError::InvalidField {
                    field: "control kind",
                    reason: format!("unknown kind {v}"),
                }
                .into());
            }
        })
    }
    /// Merge priority: lower is applied first among concurrent entries.
    fn priority(self) -> u8 {
        match self {
            ControlKind::Create => 0,
            ControlKind::Remove => 1,
            ControlKind::Promote => 2,
            ControlKind::Add => 3,
        }
    }
}

/// One signed membership change.
///
/// ```text
/// 0x01 || group (32) || prev (32; zero for create) || kind (1) || target (32)
///      || signer (32) || timestamp (u64) || name (u8 len + UTF-8; create only)
///      || Ed25519 signature (64) over CONTROL_CONTEXT || all preceding bytes
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlEntry {
    /// The group.
    pub group: [u8; 32],
    /// Hash of the entry this one follows (zero for create).
    pub prev: [u8; 32],
    /// What it does.
    pub kind: ControlKind,
    /// Whom it concerns.
    pub target: AuthorId,
    /// Who signed it.
    pub signer: AuthorId,
    /// Signer's clock, ms.
    pub timestamp_ms: u64,
    /// Group name (create only, else empty).
    pub name: String,
    /// Signature.
    pub signature: [u8; 64],
}

impl ControlEntry {
    fn signed_part(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(180 + self.name.len());
        w.u8(1)
            .bytes(&self.group)
            .bytes(&self.prev)
            .u8(self.kind as u8)
            .bytes(self.target.as_bytes())
            .bytes(self.signer.as_bytes())
            .u64(self.timestamp_ms)
            .u8(self.name.len() as u8)
            .bytes(self.name.as_bytes());
        w.into_bytes()
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signed_part();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Entry hash (BLAKE3 of the encoding): what the next entry names.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Decodes untrusted bytes (total; signature not checked here).
    pub fn decode(bytes: &[u8]) -> MResult<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8("control version")?;
        if version != 1 {
            return Err(crate::encoding::DecodeError::UnsupportedVersion {
                what: "control entry",
                version,
            }
            .into());
        }
        let group = r.array("group")?;
        let prev = r.array("prev")?;
        let kind = ControlKind::from_u8(r.u8("kind")?)?;
        let target = AuthorId::from_bytes(r.array("target")?);
        let signer = AuthorId::from_bytes(r.array("signer")?);
        let timestamp_ms = r.u64("timestamp")?;
        let len = r.u8("name length")? as usize;
        let name = r.text(len, GROUP_NAME_MAX, "group name")?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(ControlEntry {
            group,
            prev,
            kind,
            target,
            signer,
            timestamp_ms,
            name,
            signature,
        })
    }

    /// Makes and signs an entry.
    pub(crate) fn sign(
        me: &Identity,
        group: [u8; 32],
        prev: [u8; 32],
        kind: ControlKind,
        target: AuthorId,
        timestamp_ms: u64,
        name: String,
    ) -> Self {
        let mut e = ControlEntry {
            group,
            prev,
            kind,
            target,
            signer: me.author_id(),
            timestamp_ms,
            name,
            signature: [0; 64],
        };
        e.signature = me.sign(&[CONTROL_CONTEXT, &e.signed_part()].concat());
        e
    }

    fn verify(&self) -> MResult<()> {
        verify_strict(
            &self.signer,
            &[CONTROL_CONTEXT, &self.signed_part()].concat(),
            &self.signature,
        )
        .map_err(|_| MessagingError::BadSignature("group control entry"))
    }
}

/// The membership a set of control entries resolves to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// Current members.
    pub members: BTreeSet<AuthorId>,
    /// Current admins (a subset of members).
    pub admins: BTreeSet<AuthorId>,
    /// Number of removals applied: the sender-key epoch.
    pub epoch: u32,
    /// Hash of the last entry in merge order: `prev` of the next entry.
    pub head: [u8; 32],
    /// The group's name.
    pub name: String,
}

/// All accepted control entries of one group.
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    pub(crate) group: [u8; 32],
    entries: BTreeMap<[u8; 32], ControlEntry>,
}

impl Membership {
    /// A group with its create entry.
    pub(crate) fn new(create: ControlEntry) -> MResult<Self> {
        create.verify()?;
        if create.kind != ControlKind::Create
            || create.prev != [0; 32]
            || create.target != create.signer
        {
            return Err(MessagingError::Forbidden("not a create entry".into()));
        }
        let mut entries = BTreeMap::new();
        let group = create.group;
        entries.insert(create.hash(), create);
        Ok(Membership { group, entries })
    }

    /// All entries (for sending the chain to a new member).
    pub(crate) fn entries(&self) -> impl Iterator<Item = &ControlEntry> {
        self.entries.values()
    }

    /// Accepts one entry after checking its signature, group and `prev`.
    /// Returns whether it was new. A forged entry is an error and changes
    /// nothing.
    pub(crate) fn insert(&mut self, e: ControlEntry) -> MResult<bool> {
        if e.group != self.group {
            return Err(MessagingError::Forbidden("entry of another group".into()));
        }
        e.verify()?;
        let h = e.hash();
        if self.entries.contains_key(&h) {
            return Ok(false);
        }
        if e.kind == ControlKind::Create {
            return Err(MessagingError::Forbidden("second create entry".into()));
        }
        if !self.entries.contains_key(&e.prev) {
            return Err(MessagingError::Forbidden(
                "control entry names an unknown previous entry".into(),
            ));
        }
        if self.entries.len() >= MAX_CONTROL_ENTRIES {
            return Err(MessagingError::Forbidden("too many control entries".into()));
        }
        self.entries.insert(h, e);
        Ok(true)
    }

    fn is_ancestor(&self, ancestor: &[u8; 32], of: &[u8; 32]) -> bool {
        let mut cur = *of;
        // Bounded: each step moves to a strictly earlier entry of a tree.
        for _ in 0..=self.entries.len() {
            if &cur == ancestor {
                return true;
            }
            match self.entries.get(&cur) {
                Some(e) if e.kind != ControlKind::Create => cur = e.prev,
                _ => return false,
            }
        }
        false
    }

    /// The deterministic merge (see the module docs).
    pub(crate) fn view(&self) -> MembershipView {
        let mut children: BTreeMap<[u8; 32], Vec<[u8; 32]>> = BTreeMap::new();
        let mut root = None;
        for (h, e) in &self.entries {
            if e.kind == ControlKind::Create {
                root = Some(*h);
            } else {
                children.entry(e.prev).or_default().push(*h);
            }
        }
        let mut view = MembershipView::default();
        let Some(root) = root else { return view };
        let mut ready = BinaryHeap::new();
        ready.push(Reverse((0u8, root)));
        let mut removals: Vec<(AuthorId, [u8; 32])> = Vec::new();
        while let Some(Reverse((_, h))) = ready.pop() {
            let Some(e) = self.entries.get(&h) else {
                continue;
            };
            let admin = view.admins.contains(&e.signer);
            match e.kind {
                ControlKind::Create => {
                    view.members.insert(e.signer);
                    view.admins.insert(e.signer);
                    view.name = e.name.clone();
                }
                ControlKind::Add => {
                    let unseen_removal = removals
                        .iter()
                        .any(|(t, rh)| t == &e.target && !self.is_ancestor(rh, &h));
                    if admin
                        && !view.members.contains(&e.target)
                        && view.members.len() < MAX_MEMBERS
                        && !unseen_removal
                    {
                        view.members.insert(e.target);
                    }
                }
                ControlKind::Remove => {
                    if admin || e.signer == e.target {
                        // Recorded even when the target is already gone, so
                        // a concurrent re-addition still loses to it.
                        removals.push((e.target, h));
                        if view.members.remove(&e.target) {
                            view.admins.remove(&e.target);
                            view.epoch += 1;
                        }
                    }
                }
                ControlKind::Promote => {
                    if admin && view.members.contains(&e.target) {
                        view.admins.insert(e.target);
                    }
                }
            }
            view.head = h;
            for c in children.get(&h).into_iter().flatten() {
                if let Some(ce) = self.entries.get(c) {
                    ready.push(Reverse((ce.kind.priority(), *c)));
                }
            }
        }
        view
    }

    pub(crate) fn write(&self, w: &mut super::primitives::SecretBuf) {
        w.bytes(&self.group).u32(self.entries.len() as u32);
        for e in self.entries.values() {
            let b = e.encode();
            w.u32(b.len() as u32).bytes(&b);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> MResult<Self> {
        let group = r.array("group")?;
        let count = r.u32("entry count")? as usize;
        if count > MAX_CONTROL_ENTRIES {
            return Err(MessagingError::InvalidInput(
                "too many control entries".into(),
            ));
        }
        let mut entries = BTreeMap::new();
        for _ in 0..count {
            let len = r.u32("entry length")? as usize;
            // Stored by us after verification; decoding re-checks the shape.
            let e = ControlEntry::decode(r.take(len, "entry")?)?;
            entries.insert(e.hash(), e);
        }
        Ok(Membership { group, entries })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::keys::RootSeed;

    fn id(n: u8) -> Identity {
        Identity::from_seed(RootSeed::from_bytes([n; 32]))
    }

    #[test]
    fn concurrent_adds_and_removes_converge() {
        let (a, b, c, d, e) = (id(1), id(2), id(3), id(4), id(5));
        let g = [9; 32];
        let create = ControlEntry::sign(
            &a,
            g,
            [0; 32],
            ControlKind::Create,
            a.author_id(),
            1,
            "g".into(),
        );
        let mut m = Membership::new(create.clone()).unwrap();
        let add_b = ControlEntry::sign(
            &a,
            g,
            create.hash(),
            ControlKind::Add,
            b.author_id(),
            2,
            String::new(),
        );
        m.insert(add_b.clone()).unwrap();
        let promote_b = ControlEntry::sign(
            &a,
            g,
            add_b.hash(),
            ControlKind::Promote,
            b.author_id(),
            3,
            String::new(),
        );
        m.insert(promote_b.clone()).unwrap();
        let add_c = ControlEntry::sign(
            &a,
            g,
            promote_b.hash(),
            ControlKind::Add,
            c.author_id(),
            4,
            String::new(),
        );
        m.insert(add_c.clone()).unwrap();
        let head = add_c.hash();
        // Concurrently: A removes B; B adds D; B removes C; A adds E; and A
        // re-adds C concurrently with B's removal of C.
        let concurrent = vec![
            ControlEntry::sign(
                &a,
                g,
                head,
                ControlKind::Remove,
                b.author_id(),
                5,
                String::new(),
            ),
            ControlEntry::sign(
                &b,
                g,
                head,
                ControlKind::Add,
                d.author_id(),
                5,
                String::new(),
            ),
            ControlEntry::sign(
                &b,
                g,
                head,
                ControlKind::Remove,
                c.author_id(),
                5,
                String::new(),
            ),
            ControlEntry::sign(
                &a,
                g,
                head,
                ControlKind::Add,
                e.author_id(),
                5,
                String::new(),
            ),
        ];
        let mut views = Vec::new();
        for rotation in 0..concurrent.len() {
            let mut replica = Membership::new(create.clone()).unwrap();
            for x in [&add_b, &promote_b, &add_c] {
                replica.insert(x.clone()).unwrap();
            }
            let mut order = concurrent.clone();
            order.rotate_left(rotation);
            if rotation % 2 == 1 {
                order.reverse();
            }
            for x in order {
                replica.insert(x).unwrap();
            }
            views.push(replica.view());
        }
        for v in &views {
            assert_eq!(v, &views[0]);
        }
        let v = &views[0];
        // Removals first: B is removed before B's own add/remove apply, so
        // those are void; A's add of E stands.
        assert!(!v.members.contains(&b.author_id()));
        assert!(!v.members.contains(&d.author_id()));
        assert!(v.members.contains(&c.author_id()));
        assert!(v.members.contains(&e.author_id()));
        assert_eq!(v.epoch, 1);
    }

    #[test]
    fn removal_wins_over_a_concurrent_re_add() {
        let (a, b, c) = (id(1), id(2), id(3));
        let g = [8; 32];
        let create = ControlEntry::sign(
            &a,
            g,
            [0; 32],
            ControlKind::Create,
            a.author_id(),
            1,
            "g".into(),
        );
        let mut m = Membership::new(create.clone()).unwrap();
        let add_b = ControlEntry::sign(
            &a,
            g,
            create.hash(),
            ControlKind::Add,
            b.author_id(),
            2,
            String::new(),
        );
        m.insert(add_b.clone()).unwrap();
        let promote_b = ControlEntry::sign(
            &a,
            g,
            add_b.hash(),
            ControlKind::Promote,
            b.author_id(),
            3,
            String::new(),
        );
        m.insert(promote_b.clone()).unwrap();
        let add_c = ControlEntry::sign(
            &a,
            g,
            promote_b.hash(),
            ControlKind::Add,
            c.author_id(),
            4,
            String::new(),
        );
        m.insert(add_c.clone()).unwrap();
        // A removes C; concurrently B removes C and immediately re-adds C
        // on its own branch; A's removal was not seen by B's re-add.
        let rm_a = ControlEntry::sign(
            &a,
            g,
            add_c.hash(),
            ControlKind::Remove,
            c.author_id(),
            5,
            String::new(),
        );
        let rm_b = ControlEntry::sign(
            &b,
            g,
            add_c.hash(),
            ControlKind::Remove,
            c.author_id(),
            5,
            String::new(),
        );
        let readd = ControlEntry::sign(
            &b,
            g,
            rm_b.hash(),
            ControlKind::Add,
            c.author_id(),
            6,
            String::new(),
        );
        m.insert(rm_a).unwrap();
        m.insert(rm_b).unwrap();
        m.insert(readd).unwrap();
        assert!(!m.view().members.contains(&c.author_id()));
    }

    #[test]
    fn forged_entries_are_refused() {
        let (a, m_) = (id(1), id(6));
        let g = [7; 32];
        let create = ControlEntry::sign(
            &a,
            g,
            [0; 32],
            ControlKind::Create,
            a.author_id(),
            1,
            "g".into(),
        );
        let mut m = Membership::new(create.clone()).unwrap();
        // Bad signature.
        let mut forged = ControlEntry::sign(
            &a,
            g,
            create.hash(),
            ControlKind::Add,
            m_.author_id(),
            2,
            String::new(),
        );
        forged.signature[0] ^= 1;
        assert!(matches!(
            m.insert(forged),
            Err(MessagingError::BadSignature(_))
        ));
        // Wrong prev.
        let orphan = ControlEntry::sign(
            &a,
            g,
            [1; 32],
            ControlKind::Add,
            m_.author_id(),
            2,
            String::new(),
        );
        assert!(matches!(
            m.insert(orphan),
            Err(MessagingError::Forbidden(_))
        ));
        // Non-admin signer: accepted as evidence, but without effect.
        let self_add = ControlEntry::sign(
            &m_,
            g,
            create.hash(),
            ControlKind::Add,
            m_.author_id(),
            2,
            String::new(),
        );
        m.insert(self_add).unwrap();
        assert!(!m.view().members.contains(&m_.author_id()));
        // Round trip of the encoding.
        let bytes = create.encode();
        assert_eq!(ControlEntry::decode(&bytes).unwrap(), create);
        assert!(ControlEntry::decode(&bytes[1..]).is_err());
    }
}
