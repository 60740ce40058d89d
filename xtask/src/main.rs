//! `cargo xtask`: Tenantgate's migration harness for this workspace's app, the demo shop.
//! Everything it does is the harness library's; this hands it the app.

fn main() -> std::process::ExitCode {
    tenantgate_harness::main(tenantgate_harness::Project {
        package: "app",
        config: "migrations/tenantgate.toml",
        app: Some(&app::TENANTGATE),
        api: Some(&app::api::SHOP_API),
    })
}
