use ruma::{events::receipt::ReceiptThread, owned_event_id};
use serde_json::json;

use super::{
    testing::{fixture, user},
    *,
};

fn code(result: Result<()>) -> (u16, String) {
    match result.unwrap_err() {
        Error::Matrix { status, kind, .. } => (status.as_u16(), kind.errcode().to_string()),
        other => panic!("expected a Matrix error, got {other}"),
    }
}

#[tokio::test]
async fn members_only_and_the_event_must_be_in_the_room() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = f.room(&alice).await;
    let other = f.room(&bob).await;
    let event = f.text(&room, &alice, "hi").await;
    let elsewhere = f.text(&other, &bob, "there").await;
    let receipts = Receipts::new(f.storage.clone());
    let unthreaded = ReceiptThread::Unthreaded;
    let set = |who, event_id| {
        receipts.set(
            &f.rooms,
            who,
            &room,
            ReceiptKind::Read,
            event_id,
            &unthreaded,
        )
    };
    assert_eq!(code(set(&bob, &event).await).0, 403);
    assert_eq!(code(set(&alice, &elsewhere).await).0, 404);
    let unknown = owned_event_id!("$nope:example.org");
    assert_eq!(code(set(&alice, &unknown).await).0, 404);
    set(&alice, &event).await.unwrap();
}

#[tokio::test]
async fn one_receipt_per_slot_delivered_by_change_position() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = f.room(&alice).await;
    f.join(&room, &bob).await;
    let first = f.text(&room, &alice, "one").await;
    let second = f.text(&room, &alice, "two").await;
    let receipts = Receipts::new(f.storage.clone());
    let none = ReceiptThread::Unthreaded;
    let start = f.rooms.committed_position();

    receipts
        .set(&f.rooms, &bob, &room, ReceiptKind::Read, &second, &none)
        .await
        .unwrap();
    let after_second = f.rooms.committed_position();
    // Moving back is allowed: the receipt follows the client.
    receipts
        .set(&f.rooms, &bob, &room, ReceiptKind::Read, &first, &none)
        .await
        .unwrap();
    let upto = f.rooms.committed_position();
    let stored = receipts.get(&room, &bob, ReceiptKind::Read, None).unwrap();
    assert_eq!(stored.unwrap().event_id, first);

    let content = receipts
        .for_sync(&alice, &room, Some(start), upto)
        .unwrap()
        .unwrap();
    let by_event = content.as_object().unwrap();
    assert_eq!(by_event.len(), 1, "only the current receipt: {content}");
    assert!(content[first.as_str()]["m.read"][bob.as_str()]["ts"].is_u64());
    // Nothing changed after `upto`; the move is seen from `after_second`.
    assert!(receipts
        .for_sync(&alice, &room, Some(upto), upto)
        .unwrap()
        .is_none());
    assert!(receipts
        .for_sync(&alice, &room, Some(after_second), upto)
        .unwrap()
        .is_some());
    assert_eq!(
        receipts.for_sync(&alice, &room, None, upto).unwrap(),
        Some(content)
    );
}

#[tokio::test]
async fn private_receipts_reach_only_their_owner() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = f.room(&alice).await;
    f.join(&room, &bob).await;
    let event = f.text(&room, &alice, "secret").await;
    let receipts = Receipts::new(f.storage.clone());
    let start = f.rooms.committed_position();
    receipts
        .set(
            &f.rooms,
            &bob,
            &room,
            ReceiptKind::ReadPrivate,
            &event,
            &ReceiptThread::Unthreaded,
        )
        .await
        .unwrap();
    let upto = f.rooms.committed_position();
    assert!(receipts
        .for_sync(&alice, &room, Some(start), upto)
        .unwrap()
        .is_none());
    assert!(receipts
        .for_sync(&alice, &room, None, upto)
        .unwrap()
        .is_none());
    let own = receipts
        .for_sync(&bob, &room, Some(start), upto)
        .unwrap()
        .unwrap();
    assert!(own[event.as_str()]["m.read.private"][bob.as_str()].is_object());
}

#[tokio::test]
async fn thread_ids_must_fit_the_event() {
    let f = fixture();
    let alice = user("alice");
    let room = f.room(&alice).await;
    let root = f.text(&room, &alice, "root").await;
    let reply = f
        .send(
            &room,
            &alice,
            json!({"msgtype": "m.text", "body": "reply",
                   "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
        )
        .await;
    let receipts = Receipts::new(f.storage.clone());
    let (receipts_ref, f_ref, alice_ref, room_ref) = (&receipts, &f, &alice, &room);
    let set = |event_id, thread: ReceiptThread| async move {
        let (rooms, kind) = (&f_ref.rooms, ReceiptKind::Read);
        receipts_ref
            .set(rooms, alice_ref, room_ref, kind, event_id, &thread)
            .await
    };
    let in_root = ReceiptThread::Thread(root.clone());
    set(&reply, in_root.clone()).await.unwrap();
    set(&root, in_root).await.unwrap();
    set(&root, ReceiptThread::Main).await.unwrap();
    assert_eq!(code(set(&reply, ReceiptThread::Main).await).0, 400);
    let elsewhere = ReceiptThread::Thread(reply.clone());
    assert_eq!(code(set(&root, elsewhere).await).0, 400);
    let empty = ReceiptThread::try_from(Some("")).unwrap();
    assert_eq!(
        code(set(&root, empty).await),
        (400, "M_INVALID_PARAM".into())
    );

    let stored = receipts
        .get(&room, &alice, ReceiptKind::Read, Some(root.as_str()))
        .unwrap()
        .unwrap();
    assert_eq!(stored.event_id, root);
    let content = receipts
        .for_sync(&alice, &room, None, u64::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(
        content[root.as_str()]["m.read"][alice.as_str()]["thread_id"],
        "main"
    );
}
