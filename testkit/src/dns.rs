//! A DNS server for the membership tests, on a loopback UDP port: it answers A queries
//! for any name with the addresses it is given now ([`Dns::set`]), TTL 0, and counts the
//! queries so that a test can wait for the next lookup instead of sleeping. Built on
//! hickory's protocol crate (the resolver under test is hickory's too, but the messages
//! are plain RFC 1035 either way).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// A running test DNS server; stops when dropped.
#[derive(Debug)]
pub struct Dns {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<IpAddr>>>,
    queries: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    ///
    /// # Panics
    ///
    /// If it cannot bind.
    pub async fn start(records: Vec<IpAddr>) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind a UDP port");
        let addr = socket.local_addr().expect("local address");
        let records = Arc::new(Mutex::new(records));
        let (count, queries) = watch::channel(0u64);
        let served = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let answer = answer(&query, &served.lock());
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
                count.send_modify(|c| *c += 1);
            }
        });
        Dns {
            addr,
            records,
            queries,
            task,
        }
    }

    /// Where the server listens: the `resolver=` of a `dns://` membership.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the addresses every name resolves to.
    pub fn set(&self, records: Vec<IpAddr>) {
        *self.records.lock() = records;
    }

    /// A receiver of the number of queries answered so far.
    pub fn queries(&self) -> watch::Receiver<u64> {
        self.queries.clone()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(query: &Message, records: &[IpAddr]) -> Message {
    let mut out = Message::new(query.metadata.id, MessageType::Response, query.metadata.op_code);
    out.metadata.authoritative = true;
    out.metadata.recursion_desired = query.metadata.recursion_desired;
    out.metadata.recursion_available = true;
    for q in &query.queries {
        out.add_query(q.clone());
        for ip in records {
            let rdata = match (q.query_type(), ip) {
                (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                _ => continue,
            };
            out.add_answer(Record::from_rdata(q.name().clone(), 0, rdata));
        }
    }
    if records.is_empty() {
        out.metadata.response_code = ResponseCode::NXDomain;
    }
    out
}
