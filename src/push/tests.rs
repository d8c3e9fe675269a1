//! Unit tests: rule evaluation against the predefined and user rules
//! (spec "Predefined Rules", "Conditions"), and the unread counts with
//! receipts (spec "Receiving notifications", "Threaded read receipts").

use ruma::{
    events::{
        receipt::ReceiptThread,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    },
    owned_event_id, owned_room_id, owned_user_id,
    push::{
        Action, FlattenedJson, HighlightTweakValue, NewConditionalPushRule, NewPatternedPushRule,
        NewPushRule, NewSimplePushRule, PushCondition, PushConditionPowerLevelsCtx,
        PushConditionRoomCtx, RuleKind, Ruleset, Tweak,
    },
    serde::Raw,
    OwnedRoomId, OwnedUserId, RoomVersionId,
};
use serde_json::{json, Value};

use super::{
    counts::{Counts, Notification},
    eval::{evaluate, Outcome},
};
use crate::storage::{OpenMode, Storage};

fn alice() -> OwnedUserId {
    owned_user_id!("@alice:example.org")
}

fn bob() -> OwnedUserId {
    owned_user_id!("@bob:example.org")
}

fn room() -> OwnedRoomId {
    owned_room_id!("!room:example.org")
}

/// Power levels where alice (the sender of most events) is an admin.
fn power_levels() -> PushConditionPowerLevelsCtx {
    let content: RoomPowerLevelsEventContent =
        serde_json::from_value(json!({"users": {"@alice:example.org": 100}})).unwrap();
    let rules = RoomVersionId::V11.rules().unwrap();
    RoomPowerLevels::new(
        RoomPowerLevelsSource::Original(content),
        &rules.authorization,
        Vec::<OwnedUserId>::new(),
    )
    .into()
}

/// Bob's context in a room of `members` members, display name "Bobby".
fn bob_context(members: u32) -> PushConditionRoomCtx {
    PushConditionRoomCtx::new(room(), members.into(), bob(), "Bobby".to_owned())
        .with_power_levels(power_levels())
}

fn flat(event: &Raw<Value>) -> FlattenedJson {
    FlattenedJson::from_raw(event)
}

fn message(sender: &OwnedUserId, content: Value) -> Raw<Value> {
    let event = json!({
        "type": "m.room.message",
        "sender": sender,
        "room_id": room(),
        "event_id": "$event:example.org",
        "origin_server_ts": 1,
        "content": content,
    });
    Raw::from_json(serde_json::value::to_raw_value(&event).unwrap())
}

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

async fn outcome(rules: &Ruleset, sender: &OwnedUserId, content: Value) -> Outcome {
    evaluate(rules, &flat(&message(sender, content)), &bob_context(3)).await
}

const NOTIFY: Outcome = Outcome {
    notify: true,
    highlight: false,
};
const HIGHLIGHT: Outcome = Outcome {
    notify: true,
    highlight: true,
};
const NOTHING: Outcome = Outcome {
    notify: false,
    highlight: false,
};

fn highlight_actions() -> Vec<Action> {
    vec![
        Action::Notify,
        Action::SetTweak(Tweak::Highlight(HighlightTweakValue::Yes)),
    ]
}

#[tokio::test]
async fn a_plain_message_notifies_and_own_messages_never_do() {
    let rules = Ruleset::server_default(&bob());
    assert_eq!(outcome(&rules, &alice(), text("hello")).await, NOTIFY);
    // One-to-one rooms notify too (`.m.rule.room_one_to_one`).
    let one_to_one = evaluate(
        &rules,
        &flat(&message(&alice(), text("hi"))),
        &bob_context(2),
    )
    .await;
    assert_eq!(one_to_one, NOTIFY);
    assert_eq!(outcome(&rules, &bob(), text("mine")).await, NOTHING);
}

#[tokio::test]
async fn a_user_mention_highlights() {
    let rules = Ruleset::server_default(&bob());
    let mention = json!({
        "msgtype": "m.text", "body": "hey",
        "m.mentions": {"user_ids": ["@bob:example.org"]},
    });
    assert_eq!(outcome(&rules, &alice(), mention).await, HIGHLIGHT);
    let other = json!({
        "msgtype": "m.text", "body": "hey",
        "m.mentions": {"user_ids": ["@carol:example.org"]},
    });
    assert_eq!(outcome(&rules, &alice(), other).await, NOTIFY);
}

#[tokio::test]
async fn a_room_mention_highlights_only_from_a_sender_with_the_power() {
    let rules = Ruleset::server_default(&bob());
    let at_room = json!({"msgtype": "m.text", "body": "@room tea", "m.mentions": {"room": true}});
    // Alice has 100, `notifications.room` defaults to 50.
    assert_eq!(outcome(&rules, &alice(), at_room.clone()).await, HIGHLIGHT);
    let carol = owned_user_id!("@carol:example.org");
    assert_eq!(outcome(&rules, &carol, at_room).await, NOTIFY);
}

#[tokio::test]
async fn a_display_name_rule_highlights_on_the_name_in_the_body() {
    // The predefined `.m.rule.contains_display_name` left the spec with
    // MSC4210 (v1.17); the (deprecated) condition remains for user rules.
    #[allow(deprecated)]
    let condition = PushCondition::ContainsDisplayName;
    let mut rules = Ruleset::server_default(&bob());
    let rule = NewConditionalPushRule::new(
        "display-name".to_owned(),
        vec![condition],
        highlight_actions(),
    );
    rules
        .insert(NewPushRule::Override(rule), None, None)
        .unwrap();
    assert_eq!(
        outcome(&rules, &alice(), text("ask Bobby")).await,
        HIGHLIGHT
    );
    assert_eq!(outcome(&rules, &alice(), text("ask Bob")).await, NOTIFY);
}

#[tokio::test]
async fn keyword_rules_notify_or_highlight_as_their_actions_say() {
    let mut rules = Ruleset::server_default(&bob());
    let cake = NewPatternedPushRule::new("cake".to_owned(), "cake".to_owned(), highlight_actions());
    rules
        .insert(NewPushRule::Content(cake), None, None)
        .unwrap();
    assert_eq!(
        outcome(&rules, &alice(), text("Cake time")).await,
        HIGHLIGHT
    );
    assert_eq!(outcome(&rules, &alice(), text("pancakes")).await, NOTIFY);

    rules
        .set_actions(RuleKind::Content, "cake", vec![Action::Notify])
        .unwrap();
    assert_eq!(outcome(&rules, &alice(), text("cake")).await, NOTIFY);
    let quiet: Vec<Action> = serde_json::from_value(json!(["dont_notify"])).unwrap();
    rules.set_actions(RuleKind::Content, "cake", quiet).unwrap();
    assert_eq!(outcome(&rules, &alice(), text("cake")).await, NOTHING);
}

#[tokio::test]
async fn a_room_rule_with_dont_notify_silences_the_room() {
    let mut rules = Ruleset::server_default(&bob());
    let actions: Vec<Action> = serde_json::from_value(json!(["dont_notify"])).unwrap();
    let rule = NewSimplePushRule::new(room(), actions);
    rules.insert(NewPushRule::Room(rule), None, None).unwrap();
    assert_eq!(outcome(&rules, &alice(), text("hello")).await, NOTHING);
    // Override rules come first: a mention still highlights.
    let mention = json!({"body": "x", "m.mentions": {"user_ids": ["@bob:example.org"]}});
    assert_eq!(outcome(&rules, &alice(), mention).await, HIGHLIGHT);
}

#[tokio::test]
async fn disabled_rules_do_not_apply() {
    let mut rules = Ruleset::server_default(&bob());
    let cake = NewPatternedPushRule::new("cake".to_owned(), "cake".to_owned(), highlight_actions());
    rules
        .insert(NewPushRule::Content(cake), None, None)
        .unwrap();
    rules.set_enabled(RuleKind::Content, "cake", false).unwrap();
    assert_eq!(outcome(&rules, &alice(), text("cake")).await, NOTIFY);

    // `.m.rule.master` is disabled by default; enabled, nothing notifies.
    rules
        .set_enabled(RuleKind::Override, ".m.rule.master", true)
        .unwrap();
    let mention = json!({"body": "x", "m.mentions": {"user_ids": ["@bob:example.org"]}});
    assert_eq!(outcome(&rules, &alice(), mention).await, NOTHING);
}

fn counts() -> (tempfile::TempDir, std::sync::Arc<Storage>, Counts) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db"), OpenMode::ReadWrite).unwrap();
    let counts = Counts::new(&storage);
    (dir, storage, counts)
}

fn numbers(count: &ruma::api::client::sync::sync_events::UnreadNotificationsCount) -> (u64, u64) {
    let n = |v: Option<ruma::UInt>| v.map_or(0, u64::from);
    (n(count.notification_count), n(count.highlight_count))
}

#[tokio::test]
async fn receipts_reset_counts_up_to_their_position_and_scope() {
    let (_dir, storage, counts) = counts();
    let (user, room) = (bob(), room());
    let root = owned_event_id!("$root:example.org");
    let rows = [
        (1, false, None),
        (2, true, None),
        (3, false, Some(root.clone())),
        (4, true, Some(root.clone())),
        (5, false, None),
    ];
    let mut batch = storage.batch();
    for (position, highlight, thread) in rows {
        let notification = Notification { highlight, thread };
        counts
            .stage_notification(&mut batch, &user, &room, position, &notification)
            .unwrap();
    }
    storage.commit(batch).await.unwrap();

    let all = counts.unread(&user, &room, u64::MAX, false).unwrap();
    assert_eq!(numbers(&all.room), (5, 2));
    assert!(all.threads.is_empty());
    // Only what the sync covers counts.
    assert_eq!(
        numbers(&counts.unread(&user, &room, 2, false).unwrap().room),
        (2, 1)
    );
    let split = counts.unread(&user, &room, u64::MAX, true).unwrap();
    assert_eq!(numbers(&split.room), (3, 1));
    assert_eq!(numbers(&split.threads[&root]), (2, 1));

    let read = |thread: ReceiptThread, position: u64| {
        let mut batch = storage.batch();
        let changed = counts
            .stage_read(&mut batch, &user, &room, &thread, position)
            .unwrap();
        (changed, batch)
    };
    // A main-timeline receipt at 4 leaves the thread alone.
    let (changed, batch) = read(ReceiptThread::Main, 4);
    assert!(changed);
    storage.commit(batch).await.unwrap();
    let split = counts.unread(&user, &room, u64::MAX, true).unwrap();
    assert_eq!(numbers(&split.room), (1, 0));
    assert_eq!(numbers(&split.threads[&root]), (2, 1));
    // An older receipt in the same scope changes nothing.
    assert!(!read(ReceiptThread::Main, 3).0);

    let (_, batch) = read(ReceiptThread::Thread(root.clone()), 3);
    storage.commit(batch).await.unwrap();
    let split = counts.unread(&user, &room, u64::MAX, true).unwrap();
    assert_eq!(numbers(&split.threads[&root]), (1, 1));

    // An unthreaded receipt covers everything up to it.
    let (_, batch) = read(ReceiptThread::Unthreaded, 5);
    storage.commit(batch).await.unwrap();
    let all = counts.unread(&user, &room, u64::MAX, true).unwrap();
    assert_eq!(numbers(&all.room), (0, 0));
    assert!(all.threads.is_empty());

    // A notification at or below a receipt already applied is not recorded.
    let mut batch = storage.batch();
    let late = Notification {
        highlight: false,
        thread: None,
    };
    counts
        .stage_notification(&mut batch, &user, &room, 4, &late)
        .unwrap();
    assert!(batch.is_empty());
}

#[tokio::test]
async fn thread_rows_below_the_main_receipt_still_count_until_read() {
    let (_dir, storage, counts) = counts();
    let (user, room) = (bob(), room());
    let root = owned_event_id!("$root:example.org");
    let stage = |position: u64, thread: Option<ruma::OwnedEventId>| {
        let mut batch = storage.batch();
        let notification = Notification {
            highlight: false,
            thread,
        };
        counts
            .stage_notification(&mut batch, &user, &room, position, &notification)
            .unwrap();
        batch
    };
    // A sender's pattern: notifications interleaved with the user's own
    // main-timeline events (implicit receipts), one thread row early on.
    storage.commit(stage(1, Some(root.clone()))).await.unwrap();
    for position in 2..200u64 {
        let batch = if position % 3 == 0 {
            let mut batch = storage.batch();
            counts
                .stage_read(&mut batch, &user, &room, &ReceiptThread::Main, position)
                .unwrap();
            batch
        } else {
            stage(position, None)
        };
        storage.commit(batch).await.unwrap();
        if position == 150 {
            // Refused: the main receipt at 150 covers it.
            assert!(stage(149, None).is_empty());
        }
    }
    // Main rows after the last receipt (198): 199. The thread row stays.
    let split = counts.unread(&user, &room, u64::MAX, true).unwrap();
    assert_eq!(numbers(&split.room), (1, 0));
    assert_eq!(numbers(&split.threads[&root]), (1, 0));
    let all = counts.unread(&user, &room, u64::MAX, false).unwrap();
    assert_eq!(numbers(&all.room), (2, 0));

    let mut batch = storage.batch();
    counts
        .stage_read(&mut batch, &user, &room, &ReceiptThread::Unthreaded, 199)
        .unwrap();
    storage.commit(batch).await.unwrap();
    let all = counts.unread(&user, &room, u64::MAX, true).unwrap();
    assert_eq!(numbers(&all.room), (0, 0));
    assert!(all.threads.is_empty());
}

#[tokio::test]
async fn rows_of_the_legacy_layout_are_moved_at_start() {
    let (_dir, storage, _) = counts();
    let legacy: crate::storage::Table<(OwnedUserId, OwnedRoomId, u64), Notification> =
        storage.table(crate::storage::Cf::UserRoomPosNotificationLegacy);
    let root = owned_event_id!("$root:example.org");
    let mut batch = storage.batch();
    for (position, thread) in [(3, None), (4, Some(root.clone()))] {
        let notification = Notification {
            highlight: true,
            thread,
        };
        batch
            .put(&legacy, &(bob(), room(), position), &notification)
            .unwrap();
    }
    storage.commit(batch).await.unwrap();

    Counts::migrate_legacy(&storage).unwrap();
    assert_eq!(legacy.iter().count(), 0);
    let counts = Counts::new(&storage);
    let split = counts.unread(&bob(), &room(), u64::MAX, true).unwrap();
    assert_eq!(numbers(&split.room), (1, 1));
    assert_eq!(numbers(&split.threads[&root]), (1, 1));
}

#[tokio::test]
async fn cached_read_positions_follow_applied_receipts() {
    let (_dir, storage, _) = counts();
    let counts = Counts::with_cache(&storage);
    let (user, room) = (bob(), room());
    let notification = Notification {
        highlight: false,
        thread: None,
    };
    let mut batch = storage.batch();
    counts
        .stage_notification(&mut batch, &user, &room, 5, &notification)
        .unwrap();
    storage.commit(batch).await.unwrap();
    // The cache read the stored position (none) before the receipt...
    let mut batch = storage.batch();
    assert!(counts
        .stage_read(&mut batch, &user, &room, &ReceiptThread::Main, 7)
        .unwrap());
    storage.commit(batch).await.unwrap();
    counts.read_applied(&user, &room, &ReceiptThread::Main, 7);
    // ...and follows it once applied: a later event's notification below
    // the receipt is refused, an older receipt changes nothing.
    let mut batch = storage.batch();
    counts
        .stage_notification(&mut batch, &user, &room, 6, &notification)
        .unwrap();
    assert!(batch.is_empty());
    assert!(!counts
        .stage_read(&mut batch, &user, &room, &ReceiptThread::Main, 6)
        .unwrap());
    let all = counts.unread(&user, &room, u64::MAX, false).unwrap();
    assert_eq!(numbers(&all.room), (0, 0));
}
