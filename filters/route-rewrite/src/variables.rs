//! Server variables (`%{NAME}`) that conditions and substitutions can read, named as in Apache's
//! mod_rewrite so that rules can be carried over unchanged.

/// A value taken from the request while the rules run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// `%{REQUEST_METHOD}`: `:method`.
    Method,
    /// `%{HTTP_HOST}`: `:authority`, with its port if the client sent one.
    Host,
    /// `%{REQUEST_URI}`: the path the client asked for, without the query. It does not change
    /// when an earlier rule rewrites the path (as in Apache).
    RequestUri,
    /// `%{QUERY_STRING}`: the current query, without `?`; earlier rules may have changed it.
    QueryString,
    /// `%{REQUEST_SCHEME}`: `:scheme` (`http` or `https`).
    Scheme,
    /// `%{HTTPS}`: `on` when `:scheme` is `https`, otherwise `off`.
    Https,
    /// `%{HTTP:Name}` or `%{HTTP_NAME}`: a request header, stored lower-case.
    Header(String),
}

impl Variable {
    /// Parses the text between `%{` and `}`.
    pub fn parse(name: &str) -> Result<Self, String> {
        if let Some(header) = name.strip_prefix("HTTP:") {
            return header_variable(header, name);
        }
        match name {
            "REQUEST_METHOD" => Ok(Self::Method),
            "HTTP_HOST" => Ok(Self::Host),
            "REQUEST_URI" => Ok(Self::RequestUri),
            "QUERY_STRING" => Ok(Self::QueryString),
            "REQUEST_SCHEME" => Ok(Self::Scheme),
            "HTTPS" => Ok(Self::Https),
            _ => match name.strip_prefix("HTTP_") {
                // CGI naming: HTTP_USER_AGENT is the `user-agent` header.
                Some(rest) => header_variable(&rest.replace('_', "-"), name),
                None => Err(format!(
                    "unknown variable `%{{{name}}}` (known: REQUEST_METHOD, HTTP_HOST, REQUEST_URI, \
                     QUERY_STRING, REQUEST_SCHEME, HTTPS, HTTP:<header>, HTTP_<HEADER>)"
                )),
            },
        }
    }
}

fn header_variable(header: &str, full: &str) -> Result<Variable, String> {
    let valid = !header.is_empty()
        && header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$&'*+^`|~".contains(&b));
    if valid {
        Ok(Variable::Header(header.to_ascii_lowercase()))
    } else {
        Err(format!("`%{{{full}}}` does not name a valid header"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_names_are_understood() {
        assert_eq!(Variable::parse("REQUEST_METHOD"), Ok(Variable::Method));
        assert_eq!(Variable::parse("HTTP_HOST"), Ok(Variable::Host));
        assert_eq!(Variable::parse("REQUEST_URI"), Ok(Variable::RequestUri));
        assert_eq!(Variable::parse("QUERY_STRING"), Ok(Variable::QueryString));
        assert_eq!(Variable::parse("REQUEST_SCHEME"), Ok(Variable::Scheme));
        assert_eq!(Variable::parse("HTTPS"), Ok(Variable::Https));
    }

    #[test]
    fn headers_by_name_or_cgi_style() {
        assert_eq!(
            Variable::parse("HTTP:X-Tenant"),
            Ok(Variable::Header("x-tenant".into()))
        );
        assert_eq!(
            Variable::parse("HTTP_USER_AGENT"),
            Ok(Variable::Header("user-agent".into()))
        );
    }

    #[test]
    fn unknown_or_malformed_names_are_errors() {
        assert!(Variable::parse("REMOTE_USER").is_err_and(|e| e.contains("unknown variable")));
        assert!(Variable::parse("HTTP:").is_err());
        assert!(Variable::parse("HTTP:x tenant").is_err());
    }
}
