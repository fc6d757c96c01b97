//! The request path's policy steps, one module per annotation family, each with one entry
//! point. The handler runs them in this order: [`mtls`] (may answer 400, 302, 403 or 421;
//! sets the `ssl-client-*` upstream headers), [`allow`] (may answer 403), [`redirect`] (may
//! answer 308/301/302), [`cors`] (may answer a preflight; adds response fields later),
//! [`auth`] (may answer 401 or 503; adds response fields later), [`body`] (may answer 413), endpoint choice with affinity (`balance::choice`), then
//! [`rewrite`] (the upstream target) and [`request_headers`] (`proxy-set-headers`); on the
//! upstream's response, [`response_headers`] (`add-headers`, `custom-headers`).

pub mod allow;
pub mod auth;
pub mod body;
pub mod cors;
pub mod external;
pub mod mtls;
pub mod redirect;
pub mod request_headers;
pub mod response_headers;
pub mod rewrite;
