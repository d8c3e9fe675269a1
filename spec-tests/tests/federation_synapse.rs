//! Feathur and a real Synapse share rooms in both directions (Server-Server
//! API), for room versions 10, 11 and 12: a Synapse user joins a
//! Feathur-hosted room by alias and reads its history; a Feathur user joins
//! a Synapse-hosted room; messages flow both ways. `.ci/run` installs
//! Synapse in a virtual environment and sets `FEATHUR_TEST_SYNAPSE`;
//! without it the test says so, and fails under CI.

use std::time::Duration;

use spec_tests::{
    assert_ok, enc, json, synapse_python_or_report, PeerName, SynapseServer, TestServer,
};

const DELIVERY: Duration = Duration::from_secs(45);

#[tokio::test]
async fn feathur_and_synapse_share_rooms_both_ways() {
    let Some(python) = synapse_python_or_report() else {
        return;
    };
    for version in ["10", "11", "12"] {
        let (feathur, synapse) = tokio::join!(
            TestServer::builder().peer(PeerName::Ip).start(),
            SynapseServer::start(&python, PeerName::Localhost, version),
        );
        let alice = feathur.register("alice", "secret-pw-1").await;
        let bob = synapse.register("bob", "secret-pw-2").await;

        // A Feathur-hosted room: bob joins by alias and reads history.
        let room = feathur
            .create_room(
                &alice,
                json!({
                    "preset": "public_chat",
                    "room_alias_name": format!("hall{version}"),
                    "room_version": version,
                }),
            )
            .await;
        let history = feathur
            .send_text(&alice, &room, "said before bob came")
            .await;
        let alias = format!("#hall{version}:{}", feathur.server_name());
        let joined = synapse
            .post(
                &format!("/_matrix/client/v3/join/{}", enc(&alias)),
                bob.token(),
                json!({}),
            )
            .await;
        assert!(
            joined.0.is_success(),
            "v{version}: Synapse could not join: {joined:?}\nFeathur log:\n{}\nSynapse log:\n{}",
            feathur.log(),
            synapse.log()
        );
        feathur
            .wait_for_membership(&alice, &room, &bob.user_id, "join", DELIVERY)
            .await;
        let old = synapse
            .wait_for_event(&bob, &room, &history, DELIVERY)
            .await;
        assert_eq!(old["content"]["body"], "said before bob came");
        let to_bob = feathur.send_text(&alice, &room, "hello synapse").await;
        synapse.wait_for_event(&bob, &room, &to_bob, DELIVERY).await;
        let to_alice = synapse.send_text(&bob, &room, "hello feathur").await;
        let seen = feathur
            .wait_for_event(&alice, &room, &to_alice, DELIVERY)
            .await;
        assert_eq!(seen["sender"], bob.user_id.as_str());

        // A Synapse-hosted room with some history: alice joins through
        // bob's server and reads what was said before (backfill).
        let theirs = assert_ok(
            synapse
                .post(
                    "/_matrix/client/v3/createRoom",
                    bob.token(),
                    json!({"preset": "public_chat", "room_version": version}),
                )
                .await,
        )["room_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let earlier = synapse
            .send_text(&bob, &theirs, "said before alice came")
            .await;
        let joined = feathur
            .post(
                &format!(
                    "/_matrix/client/v3/join/{}?via={}",
                    enc(&theirs),
                    enc(synapse.server_name())
                ),
                alice.token(),
                json!({}),
            )
            .await;
        assert!(
            joined.0.is_success(),
            "v{version}: Feathur could not join: {joined:?}\nFeathur log:\n{}\nSynapse log:\n{}",
            feathur.log(),
            synapse.log()
        );
        synapse
            .wait_for_membership(&bob, &theirs, &alice.user_id, "join", DELIVERY)
            .await;
        let old = feathur
            .wait_for_event(&alice, &theirs, &earlier, DELIVERY)
            .await;
        assert_eq!(
            old["content"]["body"], "said before alice came",
            "v{version}"
        );
        let from_bob = synapse.send_text(&bob, &theirs, "welcome alice").await;
        feathur
            .wait_for_event(&alice, &theirs, &from_bob, DELIVERY)
            .await;
        let from_alice = feathur.send_text(&alice, &theirs, "thanks bob").await;
        synapse
            .wait_for_event(&bob, &theirs, &from_alice, DELIVERY)
            .await;
    }
}
