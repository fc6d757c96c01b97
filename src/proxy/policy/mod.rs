//! The request path's policy steps, one module per annotation family, each with one entry
//! point. The handler runs them in this order: [`weighted`] (right after routing: a Gateway
//! API rule's weighted backends pick the route to go on with; may answer 500), [`canary`]
//! (the canary's route may take the request over), [`www`] (may answer 308), [`mtls`] (may answer 400, 302,
//! 403 or 421; sets the `ssl-client-*` upstream headers), [`allow`] (deny, then allow ranges;
//! may answer 403; with `satisfy: any` on a route with auth, [`auth`] weighs them), [`redirect`] (may
//! answer 308/301/302), [`cors`] (may answer a preflight; adds response fields later),
//! [`limits`] (may answer 503 or the configured limit status),
//! [`auth`] (may answer 401 or 503; adds response fields later), [`body`] (may answer 413);
//! [`mirror`] starts the request's copy; then endpoint choice with affinity
//! (`balance::choice`) or by the [`hash`] key (among the [`errors`] fallback's endpoints when
//! the Service has none ready), then [`prefix`] (an upstream field) and [`rewrite`] (the
//! upstream target) and [`request_headers`] (`proxy-set-headers`), then [`http10`] (reads a
//! body without a length whole; may answer 408 or 413). [`retry`] decides, in the upstream exchange, whether a failed try goes
//! on; on the way back [`response`] rewrites the upstream's Location, Refresh and Set-Cookie
//! fields and [`response_headers`] adds `add-headers` and `custom-headers`, and an answer
//! [`errors`] lists is replaced by the error backend's; [`rate`] paces the response body.
//! [`otel`] starts a traced request's span after [`redirect`] (setting `traceparent`
//! upstream) and ends it with the answer. An HTTPRoute's [`filters`] run right after
//! [`redirect`] (a redirect or CORS preflight answer, request headers), with [`mirror`]
//! (their copies), after [`rewrite`] (the URLRewrite) and last on the way back (CORS fields,
//! response headers).

pub mod allow;
pub mod auth;
pub mod body;
pub mod canary;
pub mod cors;
pub mod digest;
pub mod errors;
pub mod external;
pub mod filters;
pub mod hash;
pub mod http10;
pub mod limits;
pub mod mirror;
pub mod mtls;
pub mod otel;
pub mod prefix;
pub mod rate;
pub mod redirect;
pub mod request_headers;
pub mod response;
pub mod response_headers;
pub mod retry;
pub mod rewrite;
pub mod weighted;
pub mod www;
