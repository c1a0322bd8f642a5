// Migrations are embedded at compile time (`sqlx::migrate!`): a new or
// changed migration file must rebuild the crate. So must new query data
// (`.sqlx`) and a switch between offline and online query checking, which
// the sqlx macros read but cargo does not see.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=.sqlx");
    println!("cargo:rerun-if-env-changed=SQLX_OFFLINE");
    println!("cargo:rerun-if-env-changed=SQLX_OFFLINE_DIR");
}
