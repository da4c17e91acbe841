//! Compiles the wire contract with protox (pure Rust, no system protoc), and
//! keeps its encoded descriptors for gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/pgferry.proto");
    let fds = protox::compile(["pgferry.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("pgferry_descriptor.bin"), fds.encode_to_vec())?;
    // Only a switchover's final batch carries one: boxed, so that every
    // other chunk does not carry its room.
    tonic_prost_build::configure()
        .boxed(".pgferry.v1.BatchChunk.switchover")
        .compile_fds(fds)?;
    Ok(())
}
