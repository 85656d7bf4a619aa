//! The migrations are embedded at build time (`refinery::embed_migrations!`): a new or changed
//! file must rebuild the crate, or `migrate` would ship yesterday's schema.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
