//! The `app` binary: operators run it to apply and inspect the migrations it embeds. Its
//! command line is `app::cli`.

fn main() -> std::process::ExitCode {
    app::cli::main(app::cli::Sources::embedded())
}
