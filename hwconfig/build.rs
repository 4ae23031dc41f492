//! With the `dpdk` feature: compiles the C shim against the system's DPDK (found with
//! pkg-config) and generates Rust bindings with bindgen. Without it: nothing.

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;
    use std::process::Command;

    fn pkg_config(arg: &str) -> Vec<String> {
        let out = Command::new("pkg-config").args([arg, "libdpdk"]).output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            _ => panic!(
                "the `dpdk` feature needs DPDK 22.11's development files, found with pkg-config: \
                 apt-get install libdpdk-dev libclang-dev pkg-config"
            ),
        }
    }

    pub fn build() {
        println!("cargo:rerun-if-changed=src/dpdk/shim.c");
        println!("cargo:rerun-if-changed=src/dpdk/shim.h");
        let cflags = pkg_config("--cflags");
        let mut shim = cc::Build::new();
        shim.file("src/dpdk/shim.c");
        for f in &cflags {
            shim.flag(f);
        }
        shim.compile("sluice_dpdk_shim");
        for f in pkg_config("--libs") {
            if let Some(dir) = f.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(lib) = f.strip_prefix("-l") {
                println!("cargo:rustc-link-lib={lib}");
            }
        }
        let bindings = bindgen::Builder::default()
            .header("src/dpdk/shim.h")
            .clang_args(&cflags)
            .allowlist_function("sluice_.*")
            .allowlist_function("rte_eal_init|rte_strerror|rte_socket_id|rte_thread_register")
            .allowlist_function("rte_pktmbuf_pool_create|rte_eth_dev_count_avail")
            .allowlist_function("rte_eth_dev_get_port_by_name|rte_eth_dev_start")
            .allowlist_function("rte_eth_rx_queue_setup|rte_eth_tx_queue_setup")
            .allowlist_type("sluice_port_info")
            .derive_default(true)
            .generate_comments(false)
            .layout_tests(false)
            .generate()
            .expect("bindgen could not read DPDK's headers (is libclang-dev installed?)");
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("dpdk_bindings.rs");
        bindings
            .write_to_file(out)
            .expect("write the DPDK bindings");
    }
}
