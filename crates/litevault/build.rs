//! With the `dbpage` feature (`restore::follow` and `verify`), the bundled
//! SQLite must have the `sqlite_dbpage` virtual table, which SQLite compiles
//! only when asked. Only the build environment can ask rusqlite's bundled
//! build for it (`LIBSQLITE3_FLAGS`), so this checks that variable and fails
//! the build with the fix, instead of `follow` failing at run time.

const FLAG: &str = "SQLITE_ENABLE_DBPAGE_VTAB";

fn main() {
    println!("cargo::rerun-if-env-changed=LIBSQLITE3_FLAGS");
    if std::env::var_os("CARGO_FEATURE_DBPAGE").is_none() {
        return;
    }
    let flags = std::env::var("LIBSQLITE3_FLAGS").unwrap_or_default();
    let enabled = flags.split_whitespace().any(|f| {
        let f = f.strip_prefix("-D").unwrap_or(f);
        f == FLAG
            || f.strip_prefix(FLAG)
                .is_some_and(|v| v.starts_with('=') && v != "=0")
    });
    if !enabled {
        println!(
            "cargo::error=litevault's `dbpage` feature (follow and verify) needs SQLite's sqlite_dbpage \
             table, which the bundled SQLite has only when built with LIBSQLITE3_FLAGS=-D{FLAG}: add \
             `LIBSQLITE3_FLAGS = \"-D{FLAG}\"` to the [env] section of your project's \
             .cargo/config.toml, run `cargo clean -p libsqlite3-sys` and build again; or turn the \
             `dbpage` feature off"
        );
    }
}
