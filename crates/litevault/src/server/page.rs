//! The status page: one self-contained HTML document (inline CSS, JS and
//! SVG; no external assets). Its script reads `v1/status`, `v1/lag` and
//! `v1/files` (relative URLs, so it works behind a path prefix).

/// The page.
pub const PAGE: &str = include_str!("page.html");
