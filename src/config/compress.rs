//! Response compression settings (ingress-nginx's ConfigMap keys use-gzip, gzip-*, enable-brotli,
//! brotli-*): plain data, with ingress-nginx's defaults.

use serde::Serialize;

/// ingress-nginx's default gzip-types (text/html is compressed whatever the list says).
pub const GZIP_TYPES: &str = "application/atom+xml application/javascript application/x-javascript application/json application/rss+xml application/vnd.ms-fontobject application/x-font-ttf application/x-web-app-manifest+json application/xhtml+xml application/xml font/opentype image/svg+xml image/x-icon text/css text/javascript text/plain text/x-component";

/// ingress-nginx's default brotli-types: gzip's and application/xml+rss.
pub const BROTLI_TYPES: &str = "application/xml+rss application/atom+xml application/javascript application/x-javascript application/json application/rss+xml application/vnd.ms-fontobject application/x-font-ttf application/x-web-app-manifest+json application/xhtml+xml application/xml font/opentype image/svg+xml image/x-icon text/css text/javascript text/plain text/x-component";

/// gzip levels zlib knows (gzip-level).
pub const GZIP_LEVELS: std::ops::RangeInclusive<u32> = 1..=9;
/// brotli qualities (brotli-level).
pub const BROTLI_LEVELS: std::ops::RangeInclusive<u32> = 0..=11;

/// Both codings' settings. Off unless a coding is enabled; brotli is preferred when the
/// client accepts both as much.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Compression {
    pub gzip: Codec,
    pub brotli: Codec,
}

/// One coding's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Codec {
    /// use-gzip / enable-brotli.
    pub enabled: bool,
    /// gzip-level (1..=9) / brotli-level (0..=11); the data plane clamps to the range.
    pub level: u32,
    /// gzip-min-length / brotli-min-length: a response that declares a shorter length stays
    /// plain (one of unknown length is compressed).
    pub min_length: u64,
    /// gzip-types / brotli-types: media types without parameters, lower-case; `*` matches
    /// any. text/html always matches.
    pub types: Vec<String>,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            gzip: Codec {
                enabled: false,
                level: 1,
                min_length: 256,
                types: types(GZIP_TYPES),
            },
            brotli: Codec {
                enabled: false,
                level: 4,
                min_length: 20,
                types: types(BROTLI_TYPES),
            },
        }
    }
}

impl Compression {
    /// Whether any coding is on.
    pub fn on(&self) -> bool {
        self.gzip.enabled || self.brotli.enabled
    }
}

impl Codec {
    /// Whether a response of this media type (parameters allowed, any case) is compressed.
    pub fn compresses(&self, content_type: &str) -> bool {
        let media = content_type.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("text/html") || self.types.iter().any(|t| t == "*" || media.eq_ignore_ascii_case(t))
    }
}

/// A list of media types as the ConfigMap writes them (separated by spaces or commas), lower-case.
pub fn types(list: &str) -> Vec<String> {
    list.split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| t.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ingress_nginx_s_and_off() {
        let c = Compression::default();
        assert!(!c.on());
        assert_eq!((c.gzip.level, c.gzip.min_length), (1, 256));
        assert_eq!((c.brotli.level, c.brotli.min_length), (4, 20));
        assert_eq!(c.gzip.types.len(), 17);
        assert_eq!(c.brotli.types.len(), 18);
    }

    #[test]
    fn media_types_match_without_parameters_and_case() {
        let c = Compression::default().gzip;
        assert!(c.compresses("text/plain"));
        assert!(c.compresses("Application/JSON; charset=utf-8"));
        assert!(
            c.compresses("text/html;charset=utf-8"),
            "text/html is always compressed"
        );
        assert!(!c.compresses("image/png"));
        assert!(!c.compresses("text/event-stream"));
        assert!(!c.compresses(""));
        let any = Codec { types: types("*"), ..c };
        assert!(any.compresses("image/png") && any.compresses(""));
    }
}
