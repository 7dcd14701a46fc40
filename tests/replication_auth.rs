//! Signed replication batches (`mqtt.cluster_key`, docs/protocol.md §9):
//! real `merklekv` processes and a real mosquitto per test.

mod common;

use common::broker::{
    Broker, eventually, info, info_u64, mqtt_publish, one, replicated_node, wait_connected,
    wait_value,
};
use merklekv::replication::auth::Keys;
use merklekv::replication::members::{PRESENCE_FORMAT, Presence};
use merklekv::replication::{ChangeEvent, wire};
use merklekv::store::{Version, node_hash, now_millis};

const TOPIC: &str = "mkv-test/events";

fn batch(key: &str, value: &str) -> Vec<u8> {
    let ev = ChangeEvent {
        key: key.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
        version: Version::new(now_millis() << 16, node_hash("intruder")),
        expires: 0,
    };
    let mut out = Vec::new();
    wire::encode("intruder", &[ev], &mut out);
    out
}

fn signed(key: &str, mut payload: Vec<u8>) -> Vec<u8> {
    Keys::new(&[key.to_string()]).sign(&mut payload);
    payload
}

#[test]
fn nodes_sharing_a_key_replicate_and_refuse_unsigned_or_foreign_batches() {
    let broker = Broker::start();
    let a = replicated_node("ka", broker.port, "cluster_key = \"s3cret\"");
    let b = replicated_node("kb", broker.port, "cluster_key = \"s3cret\"");
    wait_connected(&a);
    wait_connected(&b);

    assert_eq!(one(&a, "SET shared yes"), "OK");
    wait_value(&b, "shared", "VALUE yes");
    assert_eq!(info_u64(&b, "replication_events_unauthenticated"), 0);

    // Unsigned, signed with another key, and a signed batch tampered with.
    let mut tampered = signed("s3cret", batch("tampered", "v"));
    tampered[10] ^= 1;
    mqtt_publish(
        broker.port,
        TOPIC,
        &[
            batch("unsigned", "v"),
            signed("wrong", batch("wrongkey", "v")),
            tampered,
        ],
    );
    eventually("unauthenticated batches counted", || {
        info_u64(&b, "replication_events_unauthenticated") == 3
    });
    // A correctly signed batch published after them is applied: the
    // refused ones had their turn and wrote nothing.
    mqtt_publish(broker.port, TOPIC, &[signed("s3cret", batch("good", "v"))]);
    wait_value(&b, "good", "VALUE v");
    for k in ["unsigned", "wrongkey", "tampered"] {
        assert_eq!(one(&b, &format!("GET {k}")), "NOT_FOUND", "{k}");
    }
    assert_eq!(info_u64(&b, "replication_payloads_undecodable"), 0);
}

#[test]
fn rotation_accepts_any_listed_key() {
    let broker = Broker::start();
    let old = replicated_node("rold", broker.port, "cluster_key = \"old\"");
    let new = replicated_node("rnew", broker.port, "cluster_key = [\"new\", \"old\"]");
    let other = replicated_node("rnone", broker.port, "cluster_key = \"new\"");
    wait_connected(&old);
    wait_connected(&new);
    wait_connected(&other);

    // The receiver lists [new, old]; the sender still signs with old.
    assert_eq!(one(&old, "SET rot 1"), "OK");
    wait_value(&new, "rot", "VALUE 1");
    // The rotated node signs with its first key: "new" nodes accept it,
    // the not-yet-rotated "old" node refuses it.
    assert_eq!(one(&new, "SET back 2"), "OK");
    wait_value(&other, "back", "VALUE 2");
    eventually("old node refuses the new key", || {
        info_u64(&old, "replication_events_unauthenticated") >= 1
    });
    assert_eq!(one(&old, "GET back"), "NOT_FOUND");
}

#[test]
fn a_keyless_node_accepts_signed_batches_and_a_keyed_node_refuses_unsigned_ones() {
    let broker = Broker::start();
    let keyed = replicated_node("hk", broker.port, "cluster_key = \"k\"");
    let plain = replicated_node("hp", broker.port, "");
    wait_connected(&keyed);
    wait_connected(&plain);

    assert_eq!(one(&keyed, "SET signed 1"), "OK");
    wait_value(&plain, "signed", "VALUE 1");
    assert_eq!(one(&plain, "SET unsigned 1"), "OK");
    eventually("keyed node refuses the keyless node's batch", || {
        info_u64(&keyed, "replication_events_unauthenticated") == 1
    });
    assert_eq!(one(&keyed, "GET unsigned"), "NOT_FOUND");
    assert_eq!(info_u64(&plain, "replication_events_unauthenticated"), 0);
}

/// A presence message for a member `id` at `address` (what a node
/// publishes on `<prefix>/nodes/<id>`).
fn presence(id: &str, address: &str) -> Vec<u8> {
    Presence {
        format: PRESENCE_FORMAT,
        node_id: id.to_string(),
        address: address.to_string(),
        version: "0".to_string(),
        wire_version: 1,
        tree_bits: 16,
        fanout_bits: 4,
        started_ms: now_millis(),
        status: "online".to_string(),
    }
    .encode()
}

/// The node ids in `s`'s member table (INFO `cluster_member<i>` lines).
fn member_ids(s: &common::Server) -> Vec<String> {
    let fields = info(s);
    let n: usize = fields["cluster_members"].parse().unwrap();
    (0..n)
        .map(|i| {
            let line = &fields[&format!("cluster_member{i}")];
            line.split(' ').next().unwrap().to_string()
        })
        .collect()
}

#[test]
fn keyed_nodes_refuse_unsigned_presence_messages() {
    let broker = Broker::start();
    let a = replicated_node("pa", broker.port, "cluster_key = \"s3cret\"");
    let b = replicated_node("pb", broker.port, "cluster_key = \"s3cret\"");
    wait_connected(&a);
    wait_connected(&b);
    // Signed presences: the nodes see each other.
    eventually("b lists a", || member_ids(&b) == ["pb", "pa"]);

    // Without the key nobody can add a member, or remove one with an
    // empty message; with the wrong key neither.
    mqtt_publish(
        broker.port,
        "mkv-test/nodes/fake",
        &[
            presence("fake", "127.0.0.1:1"),
            signed("wrong", presence("fake", "127.0.0.1:1")),
        ],
    );
    mqtt_publish(broker.port, "mkv-test/nodes/pa", &[Vec::new()]);
    eventually("refused presences counted", || {
        info_u64(&b, "replication_presence_unauthenticated") == 3
    });
    // A signed one published after them is taken: the refused ones had
    // their turn and changed nothing.
    mqtt_publish(
        broker.port,
        "mkv-test/nodes/real",
        &[signed("s3cret", presence("real", "127.0.0.1:2"))],
    );
    eventually("b lists the signed member", || {
        member_ids(&b).contains(&"real".to_string())
    });
    assert_eq!(member_ids(&b), ["pb", "pa", "real"]);
    assert_eq!(info_u64(&b, "replication_events_unauthenticated"), 0);
    assert_eq!(info_u64(&b, "cluster_presence_ignored"), 0);
}

#[test]
fn keyed_nodes_forget_offline_members_with_a_signed_clear() {
    let broker = Broker::start();
    let keyed = "cluster_key = \"s3cret\"\nkeep_alive = 1\nclean_session = true";
    let a = replicated_node(
        "fa",
        broker.port,
        &format!("{keyed}\n[cluster]\nforget_offline_after_seconds = 1"),
    );
    let mut c = replicated_node("fc", broker.port, keyed);
    wait_connected(&a);
    wait_connected(&c);
    eventually("a lists c", || member_ids(&a).contains(&"fc".to_string()));
    c.kill9();
    assert!(
        common::wait_until(common::broker::SLOW, || !member_ids(&a)
            .contains(&"fc".to_string())),
        "c never forgotten: {:?}",
        member_ids(&a)
    );
    // The signed clear replaced c's retained presence: a keyed node
    // started now never hears of c, and nobody refused anything.
    let d = replicated_node("fd", broker.port, keyed);
    wait_connected(&d);
    eventually("d lists a", || member_ids(&d).contains(&"fa".to_string()));
    assert!(!member_ids(&d).contains(&"fc".to_string()));
    // A signed clear of d's own topic makes d announce itself again; an
    // unsigned one is refused.
    mqtt_publish(broker.port, "mkv-test/nodes/fd", &[Vec::new()]);
    eventually("unsigned clear refused", || {
        info_u64(&a, "replication_presence_unauthenticated") == 1
    });
    assert!(member_ids(&a).contains(&"fd".to_string()));
    mqtt_publish(
        broker.port,
        "mkv-test/nodes/fd",
        &[signed("s3cret", Vec::new())],
    );
    eventually("d saw its presence cleared", || {
        d.stderr.lock().unwrap().contains("presence was cleared")
    });
    eventually("a lists d again", || {
        member_ids(&a).contains(&"fd".to_string())
    });
    assert_eq!(info_u64(&d, "replication_presence_unauthenticated"), 1);
}
