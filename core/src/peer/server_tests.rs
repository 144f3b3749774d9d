//! Tests of the peer service: hostile requests, limits, answers within the message size.

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::loader::Loaded;

/// A service over one group `g` whose loader answers most keys, fails some and says
/// NotFound for others, as an owner's would.
fn service(rt: &tokio::runtime::Runtime) -> (PeerService, Arc<Registry>) {
    let _enter = rt.enter();
    let registry = Arc::new(Registry::default());
    let group = Group::builder("g")
        .capacity(1 << 20)
        .max_key_len(512)
        .loader(|k: Bytes| async move {
            match k.first() {
                Some(b'!') => Err(Error::load(std::io::Error::other("db down".repeat(100)))),
                Some(b'?') => Ok(Loaded::not_found()),
                _ => Ok(Loaded::value(k.repeat(3))),
            }
        })
        .build()
        .unwrap();
    registry.insert(&group).unwrap();
    let svc = PeerService {
        registry: Arc::downgrade(&registry),
        max_message_size: 64 << 10,
        in_flight: Arc::new(Semaphore::new(8)),
        counters: Arc::default(),
        auth: Tokens::default().check(Arc::default()),
    };
    (svc, registry)
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 1..16),
        proptest::collection::vec(any::<u8>(), 500..700),
        Just(b"same".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = pb::GetRequest::decode(&bytes[..]);
        let _ = pb::GetManyRequest::decode(&bytes[..]);
        let _ = pb::SetRequest::decode(&bytes[..]);
        let _ = pb::DeleteRequest::decode(&bytes[..]);
        let _ = pb::GetManyResponse::decode(&bytes[..]);
    }

    #[test]
    fn hostile_requests_get_an_answer_or_a_status_never_a_panic(
        group in prop_oneof![Just("g".to_string()), "\\PC{0,8}"],
        keys in proptest::collection::vec(key(), 0..40),
        copies in 1usize..40,
        value in proptest::collection::vec(any::<u8>(), 0..4096),
        big in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (svc, _registry) = service(&rt);
        rt.block_on(async {
            let mut all: Vec<Bytes> = keys.iter().cycle().take(keys.len() * copies).map(|k| Bytes::copy_from_slice(k)).collect();
            if big {
                all.resize(MAX_KEYS_PER_GET_MANY + 1, Bytes::from_static(b"x"));
            }
            let n = all.len();
            let r = svc.get_many(Request::new(pb::GetManyRequest { group: group.clone(), keys: all, forwarded: true, ..Default::default() })).await;
            match r {
                Ok(resp) => {
                    let items = resp.into_inner().items;
                    prop_assert_eq!(items.len(), n);
                    let size: usize = items.iter().map(|i| i.encoded_len()).sum();
                    prop_assert!(size <= svc.max_message_size, "answer of {} bytes", size);
                }
                Err(status) => prop_assert!(big || group != "g" || status.code() != tonic::Code::Ok),
            }
            for k in keys.iter().take(4) {
                let k = Bytes::copy_from_slice(k);
                let _ = svc.get(Request::new(pb::GetRequest { group: group.clone(), key: k.clone(), forwarded: true, ..Default::default() })).await;
                let _ = svc.set(Request::new(pb::SetRequest { group: group.clone(), key: k.clone(), value: Bytes::from(value.clone()), expire_at_ms: u64::MAX, ..Default::default() })).await;
                let _ = svc.delete(Request::new(pb::DeleteRequest { group: group.clone(), key: k, ..Default::default() })).await;
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_node_at_its_limit_refuses_more_peer_requests() {
    let rt = tokio::runtime::Handle::current();
    let _ = rt;
    let registry = Arc::new(Registry::default());
    let svc = PeerService {
        registry: Arc::downgrade(&registry),
        max_message_size: 1 << 20,
        in_flight: Arc::new(Semaphore::new(0)),
        counters: Arc::default(),
        auth: Tokens::default().check(Arc::default()),
    };
    let e = svc
        .get(Request::new(pb::GetRequest {
            group: "g".into(),
            key: Bytes::from_static(b"k"),
            forwarded: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(svc.counters.snapshot().rejected_overloaded, 1);
}
