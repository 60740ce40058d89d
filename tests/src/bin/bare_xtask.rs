//! An xtask as a workspace has it while it adopts Tenantgate: the harness is handed no
//! embedded app (the app cannot embed a configuration `cargo xtask init` has not written
//! yet), so `init` and `migrate-test --config` read the folders from disk.

fn main() -> std::process::ExitCode {
    tenantgate_harness::main(tenantgate_harness::Project {
        package: "app",
        config: "tenantgate.toml",
        app: None,
        api: None,
    })
}
