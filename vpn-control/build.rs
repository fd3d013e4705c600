//! Builds the eBPF object (`vpn-ebpf`) with the nightly toolchain for the
//! BPF target through `aya-build`, so that `dataplane::kernel` can embed it.
//!
//! `-C target-cpu=v3` is needed (BPF atomics with fetch, 32-bit jumps and
//! sub-registers), but `aya-build` passes its flags in
//! `CARGO_ENCODED_RUSTFLAGS`, which overrides every other rustflags source.
//! Profile rustflags are the one source cargo *adds* to those, so the nested
//! (nightly) cargo gets them through its environment.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build (for tooling on machines without
//! bpf-linker); the embedded object is then empty and loading it fails with
//! a clear error.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest
        .parent()
        .ok_or("vpn-control has no parent directory")?;
    let ebpf_dir = workspace.join("vpn-ebpf");
    let common_dir = workspace.join("vpn-common").join("src");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let object = out.join("vpn-ebpf");

    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        std::fs::write(&object, [])?;
        return Ok(());
    }

    // SAFETY (not `unsafe` in edition 2021): the build script is single
    // threaded here; these variables are only read by the nested cargo.
    std::env::set_var("CARGO_UNSTABLE_PROFILE_RUSTFLAGS", "true");
    std::env::set_var("CARGO_PROFILE_RELEASE_RUSTFLAGS", "-C target-cpu=v3");
    // Host artifacts of the nested build (proc macros) must not get it.
    std::env::set_var("CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_RUSTFLAGS", "");

    let ebpf_dir = ebpf_dir.to_str().ok_or("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "vpn-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .map_err(|e| format!("building the eBPF object (needs the nightly toolchain with rust-src and bpf-linker; `cargo xtask setup` installs them): {e:#}"))?;
    Ok(())
}
