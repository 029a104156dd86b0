//! Server-rendered pages: login, consent and errors. Plain HTML with labels, a logical tab
//! order and visible focus, no script; every value placed in a page is escaped.

/// HTML-escape text for element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f5f6f8;color:#1c1e21;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:1.4rem;margin-top:0}\
label{display:block;margin:1rem 0 .3rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;\
font-size:1rem;border:1px solid #8a8d91;border-radius:4px}\
button{font-size:1rem;padding:.55rem 1.2rem;border-radius:4px;border:1px solid #1a5fb4;\
margin:1.2rem .5rem 0 0;cursor:pointer}button.primary{background:#1a5fb4;color:#fff}\
button.secondary{background:#fff;color:#1a5fb4}\
:focus-visible{outline:3px solid #f5a623;outline-offset:2px}\
.error{background:#fdecea;border:1px solid #d93025;padding:.6rem;border-radius:4px}\
ul.scopes{padding-left:1.2rem}code{background:#eef;padding:0 .2rem}";

/// A whole page.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · wasmgate</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        t = escape(title)
    )
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

fn scope_list(scopes: &[String]) -> String {
    let items: String = scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    format!("<ul class=\"scopes\">{items}</ul>")
}

pub struct LoginPage<'a> {
    pub client_id: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub fn login(p: &LoginPage<'_>) -> String {
    let error = p
        .error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1><p>to continue to <strong>{client}</strong></p>{error}\
         <form method=\"post\" action=\"/login\">{req}{csrf}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{user}\" \
         autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required>\
         <button type=\"submit\" class=\"primary\" id=\"sign-in\">Sign in</button></form>",
        client = escape(p.client_id),
        req = hidden("request", p.request),
        csrf = hidden("csrf_token", p.csrf),
        user = escape(p.username),
    );
    layout("Sign in", &body)
}

pub struct ConsentPage<'a> {
    pub client_id: &'a str,
    pub subject: &'a str,
    pub scopes: &'a [String],
    pub request: &'a str,
    pub csrf: &'a str,
}

pub fn consent(p: &ConsentPage<'_>) -> String {
    let body = format!(
        "<h1>Allow access?</h1>\
         <p>Signed in as <strong>{user}</strong>.</p>\
         <p><strong>{client}</strong> asks for access to your account with these scopes:</p>\
         {scopes}\
         <form method=\"post\" action=\"/consent\">{req}{csrf}\
         <label><input type=\"checkbox\" name=\"remember\" value=\"yes\"> \
         Remember my decision for this application</label>\
         <button type=\"submit\" name=\"decision\" value=\"allow\" class=\"primary\" \
         id=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\" \
         id=\"deny\">Deny</button></form>",
        user = escape(p.subject),
        client = escape(p.client_id),
        scopes = scope_list(p.scopes),
        req = hidden("request", p.request),
        csrf = hidden("csrf_token", p.csrf),
    );
    layout("Allow access", &body)
}

pub fn error(title: &str, message: &str) -> String {
    layout(
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>\
             <p>Go back to the application and start again.</p>",
            escape(title),
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_fields_labelled() {
        let page = login(&LoginPage {
            client_id: "<script>x</script>",
            request: "r\"><b>",
            csrf: "t",
            username: "o'neil",
            error: Some("bad & wrong"),
        });
        assert!(!page.contains("<script>x"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("value=\"r&quot;&gt;&lt;b&gt;\""));
        assert!(page.contains("o&#39;neil"));
        assert!(page.contains("bad &amp; wrong"));
        assert!(page.contains("<label for=\"username\">") && page.contains("id=\"username\""));
        assert!(page.contains("<label for=\"password\">") && page.contains("id=\"password\""));
    }
}
