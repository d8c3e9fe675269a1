//! Inbound PDUs accepted per second through the federation pipeline
//! (`Federation::receive_transaction`): signatures of the origin checked
//! with ed25519, content hashes, auth rules against the auth events, the
//! state before and the current state, storage with fsync. Transactions of
//! 50 PDUs from several origins, one room per origin, origins in parallel.
//! HTTP, TLS and the `X-Matrix` check of the request are not included.
//!
//! `cargo bench --bench inbound_pdus -- [ORIGINS] [PDUS_PER_ORIGIN]`

use std::{sync::Arc, time::Instant};

use feathur::{
    config::Config,
    federation::{EduSink, Federation, StoredKeyCache},
    rooms::{auth, pdu, CreateRoom, MemberProfile, Pdu, Preset, Rooms},
    storage::{OpenMode, Storage},
};
use feathur_federation::{
    keys::{CachedKey, KeyCache},
    SigningKey,
};
use ruma::{
    api::federation::transactions::send_transaction_message, events::TimelineEventType,
    serde::Base64, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName,
    OwnedUserId, RoomVersionId, ServerName, UInt, UserId,
};
use serde_json::{json, value::to_raw_value};

struct NoEdus;

impl EduSink for NoEdus {
    fn edu<'a>(
        &'a self,
        _origin: &'a ServerName,
        _edu: &'a serde_json::Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

struct Origin {
    name: OwnedServerName,
    key: SigningKey,
    user: OwnedUserId,
    room: OwnedRoomId,
}

/// Builds and signs an event by the origin's user on top of `prev`.
fn build(
    rooms: &Rooms,
    origin: &Origin,
    kind: &str,
    state_key: Option<&str>,
    content: serde_json::Value,
    prev: &[OwnedEventId],
    depth: u64,
) -> Pdu {
    let rules = RoomVersionId::V11.rules().unwrap();
    let kind = TimelineEventType::from(kind);
    let content = to_raw_value(&content).unwrap();
    let auth_events: Vec<OwnedEventId> =
        auth::auth_types(&rules, &kind, &origin.user, state_key, &content)
            .unwrap()
            .iter()
            .filter_map(|(t, k)| rooms.current_state_event(&origin.room, t, k).unwrap())
            .map(|p| p.event_id)
            .collect();
    let mut json = pdu::build_unsigned_pdu(pdu::UnsignedPdu {
        rules: &rules,
        room_id: Some(&origin.room),
        sender: &origin.user,
        kind: &kind,
        state_key,
        content: &content,
        prev_events: prev,
        auth_events: &auth_events,
        depth,
        origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
        redacts: None,
    })
    .unwrap();
    let event_id =
        feathur_federation::finalize_pdu(&origin.key, origin.name.as_str(), &rules, &mut json)
            .unwrap();
    Pdu::from_json(event_id, &origin.room, json).unwrap()
}

async fn send(federation: &Federation, rooms: &Rooms, origin: &Origin, txn: usize, pdus: &[Pdu]) {
    let mut request = send_transaction_message::v1::Request::new(
        format!("bench{txn}").into(),
        origin.name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = pdus
        .iter()
        .map(|p| to_raw_value(&*p.json).unwrap())
        .collect();
    let results = federation
        .receive_transaction(rooms, &NoEdus, &origin.name, request)
        .await
        .unwrap();
    for (id, result) in results {
        assert!(result.is_none(), "{id} refused: {result:?}");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let origins = args.first().copied().unwrap_or(4);
    let per_origin = args.get(1).copied().unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db"), OpenMode::ReadWrite).unwrap();
    let config = Config {
        server_name: "bench.local".try_into().unwrap(),
        ..Config::default()
    };
    let local_key = Arc::new(SigningKey::generate().unwrap());
    let rooms = Arc::new(
        Rooms::new(
            storage.clone(),
            config.server_name.clone(),
            local_key.clone(),
            RoomVersionId::V11,
        )
        .unwrap(),
    );
    let federation = Arc::new(Federation::new(&config, &storage, local_key).unwrap());
    let admin = UserId::parse("@admin:bench.local").unwrap();
    let cache = StoredKeyCache::new(&storage);

    let mut all = Vec::new();
    for n in 0..origins {
        let name: OwnedServerName = format!("origin{n}.example").try_into().unwrap();
        let key = SigningKey::generate().unwrap();
        let cached = CachedKey {
            key: Base64::new(key.public_key().to_vec()),
            valid_until_ts: MilliSecondsSinceUnixEpoch(UInt::new(u64::MAX >> 12).unwrap()),
            expired: false,
        };
        cache
            .put(&name, [(key.key_id().to_owned(), cached)].into())
            .await
            .unwrap();
        let request = CreateRoom {
            version: Some(RoomVersionId::V11),
            preset: Preset::PublicChat,
            creation_content: Default::default(),
            power_level_override: None,
            initial_state: Vec::new(),
            name: None,
            topic: None,
            invite: Vec::new(),
            is_direct: false,
            creator_profile: MemberProfile::default(),
            canonical_alias: None,
        };
        let room = rooms.create_room(&admin, request).await.unwrap();
        let user = UserId::parse(format!("@bench:{name}")).unwrap();
        let origin = Origin {
            name,
            key,
            user,
            room,
        };
        // The origin's user joins (through the pipeline as well).
        let prev = rooms.forward_extremities(&origin.room).unwrap();
        let depth = prev
            .iter()
            .map(|p| rooms.get_pdu(p).unwrap().unwrap().depth)
            .max()
            .unwrap();
        let join = build(
            &rooms,
            &origin,
            "m.room.member",
            Some(origin.user.as_str()),
            json!({"membership": "join"}),
            &prev,
            depth + 1,
        );
        send(&federation, &rooms, &origin, 0, &[join]).await;
        all.push(origin);
    }

    // Every origin's messages, chained, built and signed before timing.
    let mut work = Vec::new();
    for origin in all {
        let mut prev = rooms.forward_extremities(&origin.room).unwrap();
        let mut depth = rooms.get_pdu(&prev[0]).unwrap().unwrap().depth;
        let mut pdus = Vec::with_capacity(per_origin);
        for i in 0..per_origin {
            depth += 1;
            let pdu = build(
                &rooms,
                &origin,
                "m.room.message",
                None,
                json!({"msgtype": "m.text", "body": format!("message {i}")}),
                &prev,
                depth,
            );
            prev = vec![pdu.event_id.clone()];
            pdus.push(pdu);
        }
        work.push((origin, pdus));
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for (origin, pdus) in work {
        let (federation, rooms) = (federation.clone(), rooms.clone());
        tasks.push(tokio::spawn(async move {
            for (txn, chunk) in pdus.chunks(50).enumerate() {
                send(&federation, &rooms, &origin, txn + 1, chunk).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = origins * per_origin;
    println!(
        "inbound PDUs: {total} from {origins} origins in transactions of 50: {:.2} s, {:.0} PDUs/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}
