//! Custom error pages and fallbacks (`custom-http-errors`, `default-backend`,
//! `--default-backend-service`), as plain data: status codes and backend indexes.

use serde::Serialize;

use super::backend::BackendId;

/// `custom-http-errors` and where those answers are replaced from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorPages {
    /// The intercepted status codes, sorted, each once.
    pub codes: Vec<u16>,
    /// The error backend (the `default-backend` annotation's Service, else
    /// `--default-backend-service`): an index in `Config::backends`.
    pub backend: BackendId,
}

impl ErrorPages {
    /// The most codes one annotation lists.
    pub const MAX_CODES: usize = 100;

    pub fn intercepts(&self, status: u16) -> bool {
        self.codes.binary_search(&status).is_ok()
    }
}
