//! The headers a checkout endpoint target may carry: names a scenario may add, values as
//! they go on the wire. Checked by scenario validation (with the file position) and again
//! when connecting.

use crate::config::units::UnitError;

/// Headers doorbuster writes itself on every order it POSTs.
pub const RESERVED_HEADERS: [&str; 4] =
    ["content-type", "content-length", "host", "idempotency-key"];

/// A header a scenario may add: an HTTP token (RFC 9110 §5.6.2) not written by doorbuster.
pub fn check_header_name(name: &str) -> Result<(), UnitError> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(UnitError::new(
            format!("{name:?} is not an HTTP header name"),
            Some("header names are letters, digits and -, such as Authorization or X-Api-Key"),
        ));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(UnitError::new(
            format!("doorbuster sets the {name} header itself"),
            Some("remove it: every order is sent as JSON with its own Idempotency-Key"),
        ));
    }
    Ok(())
}

/// A header value as it goes on the wire (`${NAME}` expanded): the rule of the HTTP client
/// itself, with a line break named, since a CR or LF would end the header and start
/// another. The message never quotes the value: it usually holds a credential.
pub fn check_header_value(value: &str) -> Result<(), UnitError> {
    if value.contains(['\r', '\n']) {
        return Err(UnitError::new(
            "the value holds a line break (CR or LF), which would end the header and start another",
            Some(
                "write the value on one line; a value read from ${NAME} must not hold a newline either",
            ),
        ));
    }
    reqwest::header::HeaderValue::from_str(value)
        .map(|_| ())
        .map_err(|_| {
            UnitError::new(
                "the value holds a control character, which HTTP does not allow in a header",
                Some("a header value is text on one line; tabs are the only control characters allowed"),
            )
        })
}
