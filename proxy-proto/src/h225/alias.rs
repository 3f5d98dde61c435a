//! Aliases as routing sees them: a type and a value, compared and hashed as
//! such. The text form (`e164:1002`, `h323-ID:alice`) is only for logs and
//! configuration.

use std::fmt;
use std::net::SocketAddr;

use super::asn::h323_messages::AliasAddress;
use super::value::{bmp, bmp_text, socket_addr, transport};

/// An alias.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Alias {
    /// dialledDigits: an E.164 number (digits, `#`, `*`).
    E164(String),
    /// h323-ID.
    H323Id(String),
    /// url-ID.
    Url(String),
    /// email-ID.
    Email(String),
    /// transportID (`None`: not an IP address).
    Transport(Option<SocketAddr>),
    /// Any other type (partyNumber, mobileUIM, …): never matched.
    Other,
}

impl Alias {
    /// The alias an AliasAddress carries.
    pub fn of(a: &AliasAddress) -> Self {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match a {
            AliasAddress::dialledDigits(d) => Alias::E164(text(d.as_ref())),
            AliasAddress::h323_ID(s) => Alias::H323Id(bmp_text(s)),
            AliasAddress::url_ID(s) => Alias::Url(text(s.as_ref())),
            AliasAddress::email_ID(s) => Alias::Email(text(s.as_ref())),
            AliasAddress::transportID(t) => Alias::Transport(socket_addr(t)),
            _ => Alias::Other,
        }
    }

    /// The alias a text names: `e164:`, `h323-ID:`, `url:`, `email:` and
    /// `transport:` prefixes as [`fmt::Display`] writes them; without one,
    /// digits (with `#`, `*`) are an E.164 number and anything else an
    /// h323-ID.
    pub fn parse(text: &str) -> Self {
        if let Some((kind, v)) = text.split_once(':') {
            match kind {
                "e164" => return Alias::E164(v.into()),
                "h323-ID" => return Alias::H323Id(v.into()),
                "url" => return Alias::Url(v.into()),
                "email" => return Alias::Email(v.into()),
                "transport" => return Alias::Transport(v.parse().ok()),
                _ => {}
            }
        }
        let dialled = |c: char| c.is_ascii_digit() || c == '#' || c == '*';
        if !text.is_empty() && text.chars().all(dialled) {
            Alias::E164(text.into())
        } else {
            Alias::H323Id(text.into())
        }
    }

    /// The AliasAddress carrying it (`None` for [`Alias::Other`], or a
    /// value its type cannot hold).
    pub fn to_address(&self) -> Option<AliasAddress> {
        let ia5 = |v: &str| rasn::types::Ia5String::try_from(v.to_string()).ok();
        Some(match self {
            Alias::E164(v) => AliasAddress::dialledDigits(ia5(v)?),
            Alias::H323Id(v) => AliasAddress::h323_ID(bmp(v)),
            Alias::Url(v) => AliasAddress::url_ID(ia5(v)?),
            Alias::Email(v) => AliasAddress::email_ID(ia5(v)?),
            Alias::Transport(Some(a)) => AliasAddress::transportID(transport(*a)),
            Alias::Transport(None) | Alias::Other => return None,
        })
    }

    /// Its value without the type: what the registry indexes by.
    pub fn value(&self) -> String {
        match self {
            Alias::E164(v) | Alias::H323Id(v) | Alias::Url(v) | Alias::Email(v) => v.clone(),
            Alias::Transport(Some(a)) => a.to_string(),
            Alias::Transport(None) => "?".into(),
            Alias::Other => String::new(),
        }
    }

    /// Its digits, when it is an E.164 number.
    pub fn digits(&self) -> Option<&str> {
        match self {
            Alias::E164(d) => Some(d),
            _ => None,
        }
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alias::E164(v) => write!(f, "e164:{v}"),
            Alias::H323Id(v) => write!(f, "h323-ID:{v}"),
            Alias::Url(v) => write!(f, "url:{v}"),
            Alias::Email(v) => write!(f, "email:{v}"),
            Alias::Transport(Some(a)) => write!(f, "transport:{a}"),
            Alias::Transport(None) => f.write_str("transport:?"),
            Alias::Other => f.write_str("other"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_type_round_trip() {
        for t in [
            "e164:1002",
            "h323-ID:alice",
            "url:h323:bob@x",
            "email:a@b",
            "transport:198.18.1.1:1720",
        ] {
            assert_eq!(Alias::parse(t).to_string(), t);
        }
        assert_eq!(Alias::parse("1002"), Alias::E164("1002".into()));
        assert_eq!(Alias::parse("*99#"), Alias::E164("*99#".into()));
        assert_eq!(Alias::parse("alice"), Alias::H323Id("alice".into()));
        assert_ne!(Alias::parse("h323-ID:1002"), Alias::parse("e164:1002"));
        assert_eq!(Alias::parse("h323-ID:1002").value(), "1002");
    }
}
