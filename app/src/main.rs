//! The `app` binary: operators run it to apply and inspect the migrations it embeds, with
//! Tenantgate's command line (`migrate`, `verify`, `status`, `migrations`, `verify-manifest`).

fn main() -> std::process::ExitCode {
    tenantgate::cli::main(&app::TENANTGATE)
}
