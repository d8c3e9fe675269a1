//! The relation tables (see the parent module for what they answer) and
//! the scans over them. Storage only: visibility and rendering are the
//! caller's.

use std::sync::Arc;

use ruma::{EventId, OwnedEventId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue as RawJsonValue;

use super::THREAD;
use crate::{
    rooms::timeline::Direction,
    storage::{table::Order, Batch, Cf, Storage, StorageError, Table},
};

/// One child event as the indexes hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub child: OwnedEventId,
    pub rel_type: String,
    /// The child's event type (`/relations/{id}/{relType}/{eventType}`).
    pub kind: String,
    pub sender: OwnedUserId,
    /// The annotation key of an `m.annotation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The relationship an event's content declares: `m.relates_to` with a
/// `rel_type` (a rich reply's `m.in_reply_to` alone is not one here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(in crate::rooms) struct RelatesTo {
    pub rel_type: String,
    pub event_id: OwnedEventId,
    #[serde(default)]
    pub key: Option<String>,
}

/// The content's relationship, or `None` when it has none or a malformed
/// one ("Relationships which don't match the schema … are simply ignored").
pub(in crate::rooms) fn relates_to(content: &RawJsonValue) -> Option<RelatesTo> {
    #[derive(Deserialize)]
    struct Content {
        #[serde(rename = "m.relates_to")]
        relates_to: Option<serde_json::Value>,
    }
    let content: Content = serde_json::from_str(content.get()).ok()?;
    serde_json::from_value(content.relates_to?).ok()
}

pub(super) type Rows<'a> = Box<dyn Iterator<Item = Result<(u64, Relation), StorageError>> + 'a>;

/// Where a scan strictly beyond `from` starts: `Some(None)` at the very
/// first (or last) key, `None` when nothing lies beyond `from`.
fn start_beyond(from: Option<u64>, dir: Direction) -> Option<Option<u64>> {
    match (from, dir) {
        (None, _) => Some(None),
        (Some(from), Direction::Forward) => from.checked_add(1).map(Some),
        (Some(from), Direction::Backward) => from.checked_sub(1).map(Some),
    }
}

fn order(dir: Direction) -> Order {
    match dir {
        Direction::Forward => Order::Ascending,
        Direction::Backward => Order::Descending,
    }
}

/// The three relation tables. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub(in crate::rooms) struct RelationIndex {
    by_parent: Table<(OwnedEventId, u64), Relation>,
    by_type: Table<(OwnedEventId, String, u64), Relation>,
    threads: Table<(u64, u64), OwnedEventId>,
}

impl RelationIndex {
    pub fn new(storage: &Arc<Storage>) -> RelationIndex {
        RelationIndex {
            by_parent: storage.table(Cf::EventIdPosRelation),
            by_type: storage.table(Cf::EventIdRelTypePosRelation),
            threads: storage.table(Cf::RoomIdPosThreadRoot),
        }
    }

    /// Indexes the child at `position` of `parent`; an `m.thread` child also
    /// moves its thread to the front of the room's thread list.
    pub fn add(
        &self,
        batch: &mut Batch,
        shortroomid: u64,
        parent: &EventId,
        position: u64,
        relation: &Relation,
    ) -> Result<(), StorageError> {
        let parent = parent.to_owned();
        if relation.rel_type == THREAD {
            match self.newest(&parent, THREAD, None)? {
                Some(newest) if newest > position => {}
                newest => {
                    if let Some(newest) = newest {
                        batch.delete(&self.threads, &(shortroomid, newest));
                    }
                    batch.put(&self.threads, &(shortroomid, position), &parent)?;
                }
            }
        }
        batch.put(&self.by_parent, &(parent.clone(), position), relation)?;
        let key = (parent, relation.rel_type.clone(), position);
        batch.put(&self.by_type, &key, relation)
    }

    /// Drops the child at `position` of `parent`; for a thread's newest reply
    /// the thread moves back to its previous reply, or leaves the list.
    pub fn remove(
        &self,
        batch: &mut Batch,
        shortroomid: u64,
        parent: &EventId,
        position: u64,
        rel_type: &str,
    ) -> Result<(), StorageError> {
        let parent = parent.to_owned();
        if rel_type == THREAD && self.newest(&parent, THREAD, None)? == Some(position) {
            batch.delete(&self.threads, &(shortroomid, position));
            if let Some(previous) = self.newest(&parent, THREAD, Some(position))? {
                batch.put(&self.threads, &(shortroomid, previous), &parent)?;
            }
        }
        batch.delete(&self.by_parent, &(parent.clone(), position));
        batch.delete(&self.by_type, &(parent, rel_type.to_owned(), position));
        Ok(())
    }

    /// The position of the newest `rel_type` child (before `before`, if given).
    fn newest(
        &self,
        parent: &EventId,
        rel_type: &str,
        before: Option<u64>,
    ) -> Result<Option<u64>, StorageError> {
        self.children(parent, Some(rel_type), before, Direction::Backward)
            .next()
            .transpose()
            .map(|row| row.map(|(position, _)| position))
    }

    /// The children of `parent` (of one `rel_type`, if given) strictly after
    /// (forward) or before (backward) position `from`, in `dir`'s order.
    pub fn children<'a>(
        &'a self,
        parent: &EventId,
        rel_type: Option<&str>,
        from: Option<u64>,
        dir: Direction,
    ) -> Rows<'a> {
        let Some(start) = start_beyond(from, dir) else {
            return Box::new(std::iter::empty());
        };
        let parent = parent.to_owned();
        match rel_type {
            None => {
                let start = start.map(|position| (parent.clone(), position));
                let rows = self
                    .by_parent
                    .iter_prefix_from(&parent, start.as_ref(), order(dir));
                Box::new(rows.map(|row| row.map(|((_, position), relation)| (position, relation))))
            }
            Some(rel_type) => {
                let prefix = (parent, rel_type.to_owned());
                let start = start.map(|position| (prefix.0.clone(), prefix.1.clone(), position));
                let rows = self
                    .by_type
                    .iter_prefix_from(&prefix, start.as_ref(), order(dir));
                Box::new(
                    rows.map(|row| row.map(|((_, _, position), relation)| (position, relation))),
                )
            }
        }
    }

    /// A room's thread roots, most recently active first, with the position
    /// of their newest reply; strictly before `before` when given.
    pub fn thread_roots(
        &self,
        shortroomid: u64,
        before: Option<u64>,
    ) -> Box<dyn Iterator<Item = Result<(u64, OwnedEventId), StorageError>> + '_> {
        let Some(start) = start_beyond(before, Direction::Backward) else {
            return Box::new(std::iter::empty());
        };
        let start = start.map(|position| (shortroomid, position));
        let rows = self
            .threads
            .iter_prefix_from(&shortroomid, start.as_ref(), Order::Descending);
        Box::new(rows.map(|row| row.map(|((_, position), root)| (position, root))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::relations::ANNOTATION;
    use crate::storage::OpenMode;

    fn id(name: &str) -> OwnedEventId {
        OwnedEventId::try_from(format!("${name}")).unwrap()
    }

    fn relation(child: &str, rel_type: &str, kind: &str) -> Relation {
        Relation {
            child: id(child),
            rel_type: rel_type.to_owned(),
            kind: kind.to_owned(),
            sender: "@alice:example.org".try_into().unwrap(),
            key: None,
        }
    }

    fn children(index: &RelationIndex, parent: &str, rel_type: Option<&str>) -> Vec<u64> {
        index
            .children(&id(parent), rel_type, None, Direction::Forward)
            .map(|row| row.unwrap().0)
            .collect()
    }

    fn threads(index: &RelationIndex, room: u64) -> Vec<(u64, OwnedEventId)> {
        index.thread_roots(room, None).map(Result::unwrap).collect()
    }

    #[test]
    fn relates_to_needs_a_rel_type_and_an_event_id() {
        let parse = |json: &str| relates_to(&RawJsonValue::from_string(json.to_owned()).unwrap());
        let thread = parse(r#"{"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}"#);
        assert_eq!(thread.unwrap().event_id, id("root"));
        let reaction = parse(
            r#"{"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}}"#,
        );
        assert_eq!(reaction.unwrap().key.as_deref(), Some("👍"));
        let reply = r#"{"m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}"#;
        for bad in [
            reply,
            r#"{"m.relates_to": {"rel_type": 1, "event_id": "$x"}}"#,
            "{}",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn children_page_both_ways_and_threads_follow_their_newest_reply() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let index = RelationIndex::new(&storage);
        let mut batch = storage.batch();
        let rows = [
            ("a", 1, "r1", ANNOTATION, "m.reaction"),
            ("a", 2, "t1", THREAD, "m.room.message"),
            ("b", 3, "u1", THREAD, "m.room.message"),
            ("a", 4, "r2", ANNOTATION, "m.reaction"),
            ("a", 5, "t2", THREAD, "m.room.message"),
            ("ab", 6, "x", THREAD, "m.room.message"),
        ];
        for (parent, position, child, rel_type, kind) in rows {
            let relation = relation(child, rel_type, kind);
            index
                .add(&mut batch, 7, &id(parent), position, &relation)
                .unwrap();
            // Commit each row: `add` reads the committed newest thread reply.
            storage.commit_blocking(std::mem::take(&mut batch)).unwrap();
        }
        assert_eq!(children(&index, "a", None), [1, 2, 4, 5]);
        assert_eq!(children(&index, "a", Some(THREAD)), [2, 5]);
        assert_eq!(children(&index, "a", Some(ANNOTATION)), [1, 4]);
        assert_eq!(children(&index, "ab", None), [6]);
        let backward: Vec<u64> = index
            .children(&id("a"), None, Some(4), Direction::Backward)
            .map(|row| row.unwrap().0)
            .collect();
        assert_eq!(backward, [2, 1]);
        let forward: Vec<u64> = index
            .children(&id("a"), Some(THREAD), Some(2), Direction::Forward)
            .map(|row| row.unwrap().0)
            .collect();
        assert_eq!(forward, [5]);
        assert_eq!(
            index
                .children(&id("a"), None, Some(0), Direction::Backward)
                .count(),
            0
        );
        assert_eq!(
            threads(&index, 7),
            [(6, id("ab")), (5, id("a")), (3, id("b"))]
        );
        let older: Vec<_> = index.thread_roots(7, Some(5)).map(Result::unwrap).collect();
        assert_eq!(older, [(3, id("b"))]);
        assert!(threads(&index, 8).is_empty());

        // Dropping a thread's newest reply moves it back to the previous
        // one; dropping its last reply removes it from the list.
        index.remove(&mut batch, 7, &id("a"), 5, THREAD).unwrap();
        index.remove(&mut batch, 7, &id("b"), 3, THREAD).unwrap();
        index
            .remove(&mut batch, 7, &id("a"), 1, ANNOTATION)
            .unwrap();
        storage.commit_blocking(std::mem::take(&mut batch)).unwrap();
        assert_eq!(threads(&index, 7), [(6, id("ab")), (2, id("a"))]);
        assert_eq!(children(&index, "a", None), [2, 4]);
        assert!(children(&index, "b", None).is_empty());
        // An older reply arriving late does not move the thread back.
        let late = relation("late", THREAD, "m.room.message");
        index.add(&mut batch, 7, &id("ab"), 0, &late).unwrap();
        storage.commit_blocking(batch).unwrap();
        assert_eq!(threads(&index, 7), [(6, id("ab")), (2, id("a"))]);
        assert_eq!(children(&index, "ab", Some(THREAD)), [0, 6]);
    }
}
