//! `sluice hwconfig check`: the DPDK hardware layout checked against this machine.

use sluice_integration::netns::privileged;
use sluice_integration::*;
use std::process::Command;

fn layout(memory: &str) -> String {
    format!(
        "sluice:\n  io:\n    dpdk:\n      eal:\n        lcores: [0]\n        {memory}\n        in_memory: true\n        vdevs: [\"net_ring0\"]\n      ports:\n      - {{name: ring, device: net_ring0, addresses: [\"10.1.0.2/24\"]}}\n      queues:\n      - {{lcore: 0, port: ring, queue: 0}}\nstatic_resources:\n  listeners: []\n  clusters: []\n"
    )
}

fn check(yaml: &str, extra: &[&str]) -> Exit {
    let dir = TempDir::new("hwconfig");
    let cfg = dir.join("hw.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    run_to_exit(
        Command::new(sluice_bin())
            .args(["hwconfig", "check", "-c"])
            .arg(&cfg)
            .args(extra),
    )
}

#[test]
fn a_virtual_device_layout_without_hugepages_passes() {
    let out = check(&layout("no_huge_mb: 256"), &[]);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("ok      memory: 256 MiB of ordinary pages"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "EAL arguments: sluice -l 0 --no-huge -m 256 --no-shconf --vdev net_ring0 --no-pci"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn layout_errors_name_the_setting() {
    let bad = layout("no_huge_mb: 256").replace("queue: 0}", "queue: 3}");
    check(&bad, &[])
        .assert_fails_with("sluice.io.dpdk.queues[0].queue: port ring has queues 0 to 0");
    let bad = layout("hugepages: {size: 4MB, pages: 1}");
    check(&bad, &[]).assert_fails_with(
        "sluice.io.dpdk.eal.hugepages.size: \"4MB\": hugepage size is 2MB or 1GB",
    );
    let none = front_to(1);
    check(&none, &[]).assert_fails_with("no sluice.io.dpdk section to check");
}

/// Hugepages missing → exit 1 with the fix; `--apply` reserves them and mounts hugetlbfs;
/// then the check passes. The machine is put back as it was.
#[test]
fn apply_reserves_hugepages_and_mounts_hugetlbfs() {
    if !privileged("apply_reserves_hugepages_and_mounts_hugetlbfs") {
        return;
    }
    let nr = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
    let before = std::fs::read_to_string(nr).unwrap();
    let free: u64 =
        std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let mounted_before = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .contains(" hugetlbfs ");
    let want = free + 64;
    let yaml = layout(&format!("hugepages: {{size: 2MB, pages: {want}}}"));
    let first = check(&yaml, &[]);
    assert_eq!(first.status.code(), Some(1), "{}", first.stdout);
    assert!(
        first.stdout.contains(&format!(
            "MISSING hugepages: {free} 2048 KiB pages free, {want} needed"
        )),
        "{}",
        first.stdout
    );
    let applied = check(&yaml, &["--apply"]);
    let after = std::fs::read_to_string(nr).unwrap();
    // With the pages in place, DPDK mode runs on them (not --no-huge): Linux TCP in a
    // namespace reaches the stack on DPDK's net_tap. The machine is restored either way.
    let ran = std::panic::catch_unwind(dpdk_mode_on_hugepages);
    if !mounted_before {
        let _ = Command::new("umount").arg("/dev/hugepages").status();
    }
    std::fs::write(nr, before.trim()).unwrap();
    assert!(
        applied.status.success(),
        "{}{}",
        applied.stdout,
        applied.stderr
    );
    assert!(
        applied.stdout.contains("applied reserved"),
        "{}",
        applied.stdout
    );
    assert!(after.trim().parse::<u64>().unwrap() >= want);
    if let Err(panic) = ran {
        std::panic::resume_unwind(panic);
    }
    if !mounted_before {
        assert!(
            applied
                .stdout
                .contains("applied mounted hugetlbfs on /dev/hugepages"),
            "{}",
            applied.stdout
        );
    }
}

#[cfg(feature = "dpdk")]
fn dpdk_mode_on_hugepages() {
    use sluice_integration::netns::*;
    let free = || -> u64 {
        std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let free_before = free();
    let t = TapSluice::start(
        |iface| {
            let section = dpdk_section(iface, "")
                .replace("no_huge_mb: 512", "hugepages: {size: 2MB, pages: 32}");
            proxy_config(section, &[("echo", 8081, "echo")], &[("echo", &[9081])])
        },
        &[],
    );
    // DPDK took its memory from the hugepages.
    assert!(
        free() < free_before,
        "{} of {free_before} pages still free",
        free()
    );
    let _echo = echo_in(&t.ns, 9081);
    t.ns.run("ping", &["-c", "1", "-W", "2", STACK_IP]);
    assert_eq!(
        socat_roundtrip(&t.ns, &format!("{STACK_IP}:8081"), "on hugepages\n"),
        "on hugepages\n"
    );
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_mode_on_hugepages() {
    eprintln!("DPDK mode on hugepages not run: this build has no DPDK (feature dpdk)");
}
