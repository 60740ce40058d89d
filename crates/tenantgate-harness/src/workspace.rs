//! The workspace the harness works on: the one it is run in, found at run time from the
//! current directory (the nearest `Cargo.toml` with a `[workspace]` table), never a path
//! baked in at compile time: two clones sharing a target directory share the xtask
//! binary, and each must work on its own files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The workspace root: every path the harness uses is resolved from here.
pub fn root() -> &'static Path {
    ROOT.get_or_init(|| {
        let current = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        find_root(&current).unwrap_or(current)
    })
}

/// The nearest folder at or above `start` whose `Cargo.toml` declares a workspace; else
/// the nearest with any `Cargo.toml`.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    let mut nearest_package = None;
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let declares_workspace = text
            .parse::<toml::Table>()
            .is_ok_and(|table| table.contains_key("workspace"));
        if declares_workspace {
            return Some(dir.to_path_buf());
        }
        nearest_package.get_or_insert_with(|| dir.to_path_buf());
    }
    nearest_package
}

/// A path relative to the workspace root when it is inside it, for messages.
pub fn display_path(path: &Path) -> String {
    let root = root();
    let absolute = absolute(path);
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    match absolute.strip_prefix(&root) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// `path` made absolute against the current directory, with symlinks resolved where it
/// exists (a relative `--config` means relative to where the command runs).
pub fn absolute(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// `cargo`, in the workspace root, as the developer runs it (so it reuses their build).
pub fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(root());
    as_the_developer_runs_it(&mut command);
    command
}

/// The lint gate of `cargo xtask ci` and `cargo xtask release`: clippy on every target,
/// no warning allowed.
pub const CLIPPY: &[&str] = &[
    "clippy",
    "--workspace",
    "--all-targets",
    "--quiet",
    "--",
    "-D",
    "warnings",
];

/// Runs `cargo <args>` in the workspace as the developer runs it; an error when it fails.
pub fn run_cargo(args: &[&str]) -> anyhow::Result<()> {
    use anyhow::Context;
    let status = cargo()
        .args(args)
        .status()
        .with_context(|| format!("run cargo {}", args.join(" ")))?;
    anyhow::ensure!(status.success(), "cargo {} exited with {status}", args[0]);
    Ok(())
}

/// Leaves out of a `cargo` command the variables cargo set for the program that runs it
/// (`cargo run` and `cargo test` set `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …). Build
/// scripts that watch one would see it change, and their crates and every crate above
/// them would be rebuilt, here and again in the developer's next build.
pub fn as_the_developer_runs_it(command: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_the_program = name == "CARGO_MANIFEST_DIR"
            || name == "CARGO_MANIFEST_PATH"
            || name == "CARGO_CRATE_NAME"
            || name == "CARGO_BIN_NAME"
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_RUSTC_CURRENT_DIR"
            || name == "CARGO_TARGET_TMPDIR"
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || name.starts_with("NEXTEST");
        if set_for_the_program {
            command.env_remove(name);
        }
    }
}

/// Builds `package` (`--release` or not) and returns the path of its binary, as cargo
/// reports it (whatever the target directory and the binary's name).
pub fn build_binary(package: &str, release: bool) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let mut command = cargo();
    command.args(["build", "--quiet", "--locked", "--message-format=json"]);
    if release {
        // What ships: the package's own features, nothing the workspace's tests enable.
        command.args(["--release", "-p", package]);
    } else {
        // A debug build for measuring: the workspace's bins with the features the whole
        // workspace resolves, as `cargo test --workspace` builds them, so that their
        // artifacts are reused (`-p` alone resolves fewer features and compiled sqlx and
        // the rest again).
        command.args(["--workspace", "--bins"]);
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run cargo build")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo build -p {package}{} failed; fix the build first",
        if release { " --release" } else { "" }
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| {
            message["package_id"]
                .as_str()
                .is_some_and(|id| package_name(id) == package)
        })
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"))
        })
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .next_back()
        .with_context(|| {
            format!("cargo build -p {package} built no binary: the package the xtask names must have one")
        })
}

/// The package name in a cargo package id: `path+file:///w/app#0.1.0` (the folder's
/// name), `path+file:///w/crates/x#name@0.1.0`, `registry+https://…#name@1.0.0`.
fn package_name(id: &str) -> &str {
    let (url, fragment) = id.rsplit_once('#').unwrap_or((id, ""));
    match fragment.split_once('@') {
        Some((name, _)) => name,
        None => url.trim_end_matches('/').rsplit('/').next().unwrap_or(url),
    }
}

/// Whether two paths name the same existing file or folder.
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::find_root;

    #[test]
    fn package_names_are_read_from_cargo_package_ids() {
        assert_eq!(
            super::package_name("path+file:///work/main/app#0.1.0"),
            "app"
        );
        assert_eq!(
            super::package_name("path+file:///work/main/crates/x#tenantgate@0.1.0"),
            "tenantgate"
        );
        assert_eq!(
            super::package_name("registry+https://github.com/rust-lang/crates.io-index#sqlx@0.9.0"),
            "sqlx"
        );
    }

    #[test]
    fn the_root_is_the_nearest_workspace_above_the_current_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"app\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("app/src")).unwrap();
        std::fs::write(root.join("app/Cargo.toml"), "[package]\nname = \"app\"\n").unwrap();
        assert_eq!(find_root(&root.join("app/src")).as_deref(), Some(root));
        assert_eq!(find_root(root).as_deref(), Some(root));
    }
}
