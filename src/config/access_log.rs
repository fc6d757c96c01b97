//! The access log's line format (`log-format-upstream`): literal text and known variables.

use serde::Serialize;

/// ingress-nginx's default `log-format-upstream`.
pub const DEFAULT_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id";

/// How variable values are escaped (`log-format-escape-json`, `log-format-escape-none`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Escape {
    /// nginx's default: `"`, `\` and bytes outside printable ASCII as `\xHH`.
    #[default]
    Default,
    /// As inside a JSON string.
    Json,
    /// Verbatim.
    None,
}

/// A variable Portico knows how to fill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Var {
    RemoteAddr,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestLength,
    RequestTime,
    ProxyUpstreamName,
    ProxyAlternativeUpstreamName,
    UpstreamAddr,
    UpstreamResponseLength,
    UpstreamResponseTime,
    UpstreamStatus,
    ReqId,
    Host,
    ServerName,
    Scheme,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    /// `$http_<name>`: a request header, the name lowercased with `-` for `_`.
    Http(String),
    /// Another of the request variables every template may name (`$arg_x`, `$cookie_x`,
    /// `$remote_port`, ...), read when the request starts.
    #[serde(serialize_with = "request_var")]
    Shared(super::vars::Var),
    /// A variable Portico does not know: written as `-` (a Warning says so).
    Unknown,
}

fn request_var<S: serde::Serializer>(v: &super::vars::Var, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:?}"))
}

impl Var {
    /// The known variables by name (`$http_*` aside).
    pub const NAMES: &[(&str, Var)] = &[
        ("remote_addr", Var::RemoteAddr),
        ("remote_user", Var::RemoteUser),
        ("time_local", Var::TimeLocal),
        ("time_iso8601", Var::TimeIso8601),
        ("msec", Var::Msec),
        ("request", Var::Request),
        ("status", Var::Status),
        ("body_bytes_sent", Var::BodyBytesSent),
        ("bytes_sent", Var::BytesSent),
        ("request_length", Var::RequestLength),
        ("request_time", Var::RequestTime),
        ("proxy_upstream_name", Var::ProxyUpstreamName),
        ("proxy_alternative_upstream_name", Var::ProxyAlternativeUpstreamName),
        ("upstream_addr", Var::UpstreamAddr),
        ("upstream_response_length", Var::UpstreamResponseLength),
        ("upstream_response_time", Var::UpstreamResponseTime),
        ("upstream_status", Var::UpstreamStatus),
        ("req_id", Var::ReqId),
        ("host", Var::Host),
        ("server_name", Var::ServerName),
        ("scheme", Var::Scheme),
        ("request_method", Var::RequestMethod),
        ("request_uri", Var::RequestUri),
        ("uri", Var::Uri),
        ("document_uri", Var::Uri),
        ("args", Var::Args),
        ("query_string", Var::Args),
        ("server_protocol", Var::ServerProtocol),
        ("namespace", Var::Namespace),
        ("ingress_name", Var::IngressName),
        ("service_name", Var::ServiceName),
        ("service_port", Var::ServicePort),
    ];
}

/// One piece of a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Text(String),
    Var(Var),
}

/// A parsed `log-format-upstream` and its escaping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogFormat {
    pub parts: Vec<Part>,
    pub escape: Escape,
}

impl Default for LogFormat {
    /// [`DEFAULT_FORMAT`], piece by piece (a test checks it parses to this).
    fn default() -> Self {
        use Var::*;
        let pieces: [(&str, Var); 17] = [
            ("", RemoteAddr),
            (" - ", RemoteUser),
            (" [", TimeLocal),
            ("] \"", Request),
            ("\" ", Status),
            (" ", BodyBytesSent),
            (" \"", Http("referer".into())),
            ("\" \"", Http("user-agent".into())),
            ("\" ", RequestLength),
            (" ", RequestTime),
            (" [", ProxyUpstreamName),
            ("] [", ProxyAlternativeUpstreamName),
            ("] ", UpstreamAddr),
            (" ", UpstreamResponseLength),
            (" ", UpstreamResponseTime),
            (" ", UpstreamStatus),
            (" ", ReqId),
        ];
        let mut parts = Vec::with_capacity(36);
        for (text, var) in pieces {
            if !text.is_empty() {
                parts.push(Part::Text(text.into()));
            }
            parts.push(Part::Var(var));
        }
        LogFormat {
            parts,
            escape: Escape::Default,
        }
    }
}
