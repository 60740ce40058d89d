// `sqlx::migrate!` notices edits to existing migration files, but not added or deleted
// ones: rerunning this build script on any change under migrations/ makes cargo rebuild
// the embedded migrators whenever the folder changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
