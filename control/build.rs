//! Compiles the Envoy v3 resource protos sluice reads over xDS (listeners, routes, clusters,
//! endpoints and the filters they carry) into a descriptor set, so that `xds::decode` can turn
//! any resource into the canonical proto3 JSON the dataplane's config reader takes. The .proto
//! sources are the ones the `envoy-types` crate ships; cargo metadata says where it is.

use std::path::PathBuf;

const ENTRY_FILES: &[&str] = &[
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "xds/type/v3/typed_struct.proto",
    "udpa/type/v1/typed_struct.proto",
];

/// envoy-types' `proto/` holds one directory per upstream repository; each is an include root.
const INCLUDE_ROOTS: &[&str] = &[
    "data-plane-api",
    "googleapis",
    "protoc-gen-validate",
    "xds",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

fn envoy_types_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only this platform's packages: those are downloaded already (the others need not be).
    let target = std::env::var("TARGET").unwrap();
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &target,
        ])
        .current_dir(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "envoy-types"))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("envoy-types in cargo metadata");
    PathBuf::from(manifest).parent().unwrap().to_path_buf()
}

fn main() {
    let proto = envoy_types_dir().join("proto");
    let own = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("proto");
    let mut includes = vec![own.clone()];
    includes.extend(INCLUDE_ROOTS.iter().map(|r| proto.join(r)));
    let set = protox::compile(ENTRY_FILES, &includes).expect("compiling the Envoy protos");
    let bytes = prost::Message::encode_to_vec(&set);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("envoy_descriptors.bin");
    std::fs::write(&out, bytes).expect("writing the descriptor set");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", own.display());
}
