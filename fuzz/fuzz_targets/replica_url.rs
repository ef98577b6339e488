//! Arbitrary text as a replica URL: parsing must return a location or an
//! error, never panic. Whatever parses has a canonical URL
//! (`config::canonical_url`, what `litevault config explain` prints and the
//! form the configuration hands to `Replica::open`) that parses back to the
//! same location, and is its own canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::config::canonical_url;
use litevault::replica::ReplicaLocation;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loc) = ReplicaLocation::parse(raw) else {
        return;
    };
    let url = canonical_url(&loc);
    let back = ReplicaLocation::parse(&url)
        .unwrap_or_else(|e| panic!("{raw:?}: canonical URL {url:?} does not parse: {e}"));
    assert_eq!(
        back, loc,
        "{raw:?}: canonical URL {url:?} parses to another place"
    );
    assert_eq!(
        canonical_url(&back),
        url,
        "{raw:?}: the canonical URL is not stable"
    );
});
