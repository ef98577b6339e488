//! The errors of the XML API, as GCS names them (status, `Code`,
//! `Message`).

/// An error as GCS names it in its XML error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
    NotModified,
    /// The requested range starts past the end (the object's size).
    InvalidRange(u64),
    InvalidPart(String),
    InvalidPartOrder,
    EntityTooSmall(u32),
    InvalidArgument(String),
    NotImplemented(String),
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::NoSuchBucket | Error::NoSuchKey | Error::NoSuchUpload => 404,
            Error::PreconditionFailed => 412,
            Error::NotModified => 304,
            Error::InvalidRange(_) => 416,
            Error::InvalidPart(_)
            | Error::InvalidPartOrder
            | Error::EntityTooSmall(_)
            | Error::InvalidArgument(_) => 400,
            Error::NotImplemented(_) => 501,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::NoSuchBucket => "NoSuchBucket",
            Error::NoSuchKey => "NoSuchKey",
            Error::NoSuchUpload => "NoSuchUpload",
            Error::PreconditionFailed => "PreconditionFailed",
            Error::NotModified => "NotModified",
            Error::InvalidRange(_) => "InvalidRange",
            Error::InvalidPart(_) => "InvalidPart",
            Error::InvalidPartOrder => "InvalidPartOrder",
            Error::EntityTooSmall(_) => "EntityTooSmall",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::NotImplemented(_) => "NotImplemented",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Error::NoSuchBucket => "The specified bucket does not exist.".into(),
            Error::NoSuchKey => "The specified key does not exist.".into(),
            Error::NoSuchUpload => "The requested upload was not found.".into(),
            Error::PreconditionFailed => {
                "At least one of the pre-conditions you specified did not hold.".into()
            }
            Error::NotModified => "The resource has not been modified.".into(),
            Error::InvalidRange(_) => "The requested range cannot be satisfied.".into(),
            Error::InvalidPart(why) => format!(
                "One or more of the specified parts could not be found or did not match: {why}."
            ),
            Error::InvalidPartOrder => "The list of parts was not in ascending order.".into(),
            Error::EntityTooSmall(n) => {
                format!("Part {n} is smaller than the minimum allowed size of 5 MiB.")
            }
            Error::InvalidArgument(why) | Error::NotImplemented(why) => why.clone(),
        }
    }
}
