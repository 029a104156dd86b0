//! The answers the filter gives itself instead of forwarding: redirects, 403, 410, and 500 when
//! the rules loop. Error bodies are RFC 9457 problem+json, as everywhere in wasmgate.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Reply {
    pub fn redirect(status: u16, location: &str) -> Self {
        Self {
            status,
            headers: vec![("location".into(), location.into())],
            body: None,
        }
    }

    pub fn forbidden() -> Self {
        problem(
            403,
            "Forbidden",
            "access to this resource is denied by a rewrite rule",
        )
    }

    pub fn gone() -> Self {
        problem(410, "Gone", "this resource is no longer available")
    }

    /// The detail stays generic: the rule that looped is named in the log, not to the client.
    pub fn internal_error() -> Self {
        problem(
            500,
            "Internal Server Error",
            "the gateway's rewrite rules could not process this request",
        )
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Reply {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    });
    Reply {
        status,
        headers: vec![("content-type".into(), "application/problem+json".into())],
        body: Some(body.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_bodies_are_json_with_the_status() {
        for (reply, status) in [
            (Reply::forbidden(), 403),
            (Reply::gone(), 410),
            (Reply::internal_error(), 500),
        ] {
            assert_eq!(reply.status, status);
            let body: serde_json::Value =
                serde_json::from_str(reply.body.as_deref().unwrap()).unwrap();
            assert_eq!(body["status"], status);
            assert_eq!(
                reply.headers,
                [(
                    "content-type".to_string(),
                    "application/problem+json".to_string()
                )]
            );
        }
    }

    #[test]
    fn redirect_carries_the_location() {
        let reply = Reply::redirect(301, "/new");
        assert_eq!(reply.status, 301);
        assert_eq!(
            reply.headers,
            [("location".to_string(), "/new".to_string())]
        );
        assert!(reply.body.is_none());
    }
}
