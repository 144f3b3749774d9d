//! The native framing: the peer protocol's messages without HTTP/2.
//!
//! Nodes talk to each other over it on the same port as gRPC (the server tells them
//! apart by the first byte a connection sends). A client opens a connection with
//! [`MAGIC`], says hello with the cluster token, then sends one call at a time: a
//! 12-byte header and the request message, protobuf-encoded as for gRPC. The answer is
//! a header repeating the call's id and method, with the response message or a
//! [`pb::WireStatus`]. The format is documented in `peer.proto` beside `WireStatus`.
//!
//! One call at a time per connection keeps both ends simple and the round trip as short
//! as a raw TCP exchange: the caller's own task writes the request and reads the answer
//! (no connection task or channel between them), and the server answers on the task
//! that read the request.

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::{KIND_HEADER, pb};

/// What a native connection sends first. It starts with a zero byte, which neither an
/// HTTP/2 preface (`P`) nor a TLS handshake (0x16) does.
pub(crate) const MAGIC: &[u8; 16] = b"\0meshcache/wire1";
/// The header before every payload.
pub(crate) const HEADER: usize = 12;

/// The methods of the native framing.
pub(crate) mod method {
    pub(crate) const HELLO: u8 = 0;
    pub(crate) const GET: u8 = 1;
    pub(crate) const GET_MANY: u8 = 2;
    pub(crate) const SET: u8 = 3;
    pub(crate) const DELETE: u8 = 4;
}

/// An answer's status byte.
pub(crate) const OK: u8 = 0;
pub(crate) const ERROR: u8 = 1;

/// Bytes a reader keeps to read small frames in one system call.
const READ_CHUNK: usize = 16 << 10;

/// One frame: its header fields and its payload.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) id: u32,
    pub(crate) method: u8,
    pub(crate) status: u8,
    pub(crate) payload: Bytes,
}

/// Appends a frame carrying `message` to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, id: u32, method: u8, status: u8, message: &impl Message) {
    let len = message.encoded_len();
    out.reserve(HEADER + len);
    header(out, len, id, method, status);
    message.encode(out).expect("a Vec grows to fit the message");
}

/// Appends a frame with a raw payload (the hello's token) to `out`.
pub(crate) fn encode_raw(out: &mut Vec<u8>, id: u32, method: u8, status: u8, payload: &[u8]) {
    out.reserve(HEADER + payload.len());
    header(out, payload.len(), id, method, status);
    out.extend_from_slice(payload);
}

fn header(out: &mut Vec<u8>, len: usize, id: u32, method: u8, status: u8) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[method, status, 0, 0]);
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection ended between frames.
    Closed,
    /// It failed, or ended inside a frame.
    Io(std::io::Error),
    /// The frame is longer than the message limit (its payload is not read).
    TooLarge(usize),
}

/// Reads frames from a connection, a chunk at a time; each payload gets its own
/// allocation of its exact size, so a value kept from it holds nothing else alive.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    buf: BytesMut,
}

impl Reader {
    /// The next frame, whose payload may be at most `max` bytes.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        max: usize,
    ) -> Result<Frame, ReadError> {
        while self.buf.len() < HEADER {
            self.fill(io, self.buf.is_empty()).await?;
        }
        let h = &self.buf[..HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len > max {
            return Err(ReadError::TooLarge(len));
        }
        let (id, method, status) = (u32::from_le_bytes([h[4], h[5], h[6], h[7]]), h[8], h[9]);
        let _ = self.buf.split_to(HEADER);
        let mut payload = Vec::with_capacity(len);
        let have = self.buf.len().min(len);
        payload.extend_from_slice(&self.buf.split_to(have));
        if payload.len() < len {
            // The rest of a large payload goes straight into its own buffer.
            let start = payload.len();
            payload.resize(len, 0);
            io.read_exact(&mut payload[start..])
                .await
                .map_err(ReadError::Io)?;
        }
        Ok(Frame {
            id,
            method,
            status,
            payload: Bytes::from(payload),
        })
    }

    /// Reads what the connection has; `between`: no frame has begun (an end there is clean).
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R, between: bool) -> Result<(), ReadError> {
        if self.buf.capacity() - self.buf.len() < HEADER {
            self.buf.reserve(READ_CHUNK);
        }
        match io.read_buf(&mut self.buf).await {
            Ok(0) if between => Err(ReadError::Closed),
            Ok(0) => Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(e) => Err(ReadError::Io(e)),
        }
    }
}

/// A status as the framing carries it.
pub(crate) fn to_wire(status: &Status) -> pb::WireStatus {
    pb::WireStatus {
        code: status.code() as i32,
        message: status.message().to_string(),
        kind: status
            .metadata()
            .get(KIND_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    }
}

/// A status received over the framing, as gRPC would have delivered it.
pub(crate) fn from_wire(payload: Bytes) -> Status {
    let Ok(w) = pb::WireStatus::decode(payload) else {
        return Status::internal("malformed error answer");
    };
    let mut status = Status::new(Code::from_i32(w.code), w.message);
    if let Ok(kind) = MetadataValue::try_from(w.kind.as_str())
        && !w.kind.is_empty()
    {
        status.metadata_mut().insert(KIND_HEADER, kind);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_through_a_reader_a_byte_at_a_time() {
        let mut out = Vec::new();
        let req = pb::GetRequest {
            group: "g".into(),
            key: Bytes::from_static(b"k"),
            forwarded: true,
            peek: false,
        };
        encode(&mut out, 7, method::GET, OK, &req);
        encode_raw(&mut out, 8, method::HELLO, OK, b"token");
        let big = vec![b'v'; 3 * READ_CHUNK];
        encode_raw(&mut out, 9, method::SET, OK, &big);
        let (mut tx, mut rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut tx, &out).await.unwrap();
        });
        let mut reader = Reader::default();
        let f = reader.next(&mut rx, 1 << 20).await.unwrap();
        assert_eq!((f.id, f.method, f.status), (7, method::GET, OK));
        assert_eq!(pb::GetRequest::decode(f.payload).unwrap(), req);
        let f = reader.next(&mut rx, 1 << 20).await.unwrap();
        assert_eq!(&f.payload[..], b"token");
        let f = reader.next(&mut rx, 1 << 20).await.unwrap();
        assert_eq!(f.payload.len(), big.len());
        writer.await.unwrap();
        assert!(matches!(
            reader.next(&mut rx, 1 << 20).await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut out = Vec::new();
        encode_raw(&mut out, 1, method::GET, OK, &[0; 100]);
        let mut reader = Reader::default();
        assert!(matches!(
            reader.next(&mut &out[..], 99).await,
            Err(ReadError::TooLarge(100))
        ));
        let mut reader = Reader::default();
        assert!(matches!(
            reader.next(&mut &out[..50], 1000).await,
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn statuses_keep_their_code_and_kind() {
        let err = crate::error::Error::new(crate::error::ErrorKind::Load, "boom");
        let status = super::super::to_status(&err);
        let back = from_wire(to_wire(&status).encode_to_vec().into());
        assert_eq!(back.code(), status.code());
        assert_eq!(super::super::from_status("p", &back).kind(), err.kind());
        assert_eq!(from_wire(Bytes::from_static(b"\xff\xff")).code(), Code::Internal);
    }
}
