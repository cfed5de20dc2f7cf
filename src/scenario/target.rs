//! Target URLs as the scenario reads them. They belong to the transport (the loopback guard,
//! redaction, the schemes each broker answers to): this module only names them for the
//! scenario's own code.

pub use crate::transport::http::headers::{
    RESERVED_HEADERS, check_header_name, check_header_value,
};
pub use crate::transport::target::target_of_url;
pub use crate::transport::target_url::*;
