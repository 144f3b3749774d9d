fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Keys and values stay `bytes::Bytes` end to end: no copy between the wire and the store.
        .bytes(".")
        .compile_protos(&["proto/meshcache/peer/v1/peer.proto"], &["proto"])?;
    Ok(())
}
