//! Builds the eBPF crate for `bpfel-unknown-none` with the pinned nightly and
//! bpf-linker (both installed by `cargo xtask setup`), and places the object
//! in OUT_DIR where `fastpath` includes it.

const NIGHTLY: &str = "nightly-2026-06-15";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../proxy-common/src");
    if std::env::var_os("CARGO_FEATURE_FASTPATH").is_none() {
        return Ok(());
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "proxy-ebpf",
            root_dir: "../proxy-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(NIGHTLY),
    )
}
