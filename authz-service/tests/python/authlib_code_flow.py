"""An outsider's authorization code + PKCE client: authlib builds the authorization request,
a plain HTTP user agent posts our login and consent forms as a person would, then authlib
exchanges the code, refreshes (rotation), and revokes.

Usage: authlib_code_flow.py BASE_URL ISSUER
BASE_URL is where the service listens; ISSUER its configured issuer (the demo client's redirect
URI is ISSUER + "/callback"). Prints one line per check and exits non-zero on failure.
"""

import html
import re
import sys
import traceback
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError

BASE, ISSUER = sys.argv[1], sys.argv[2]
REDIRECT = ISSUER + "/callback"
TOKEN_URL = BASE + "/oauth2/token"


class Browser:
    """Keeps cookies by hand: ours are `Secure`, and this test talks plain HTTP to loopback."""

    def __init__(self):
        self.cookies = {}
        self.http = requests.Session()

    def _send(self, method, url, **kw):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        r = self.http.request(method, urljoin(BASE + "/", url), headers=headers,
                              allow_redirects=False, timeout=10, **kw)
        for k, v in r.cookies.items():
            self.cookies[k] = v
        return r

    def get(self, url):
        return self._send("GET", url)

    def post(self, url, form):
        return self._send("POST", url, data=form)


def field(page, name):
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m, f"no {name} field in {page[:300]}"
    return html.unescape(m.group(1))


def authorize(decision):
    """Runs the front channel; returns (client, verifier, state, final redirect URL)."""
    client = OAuth2Session("123", "secret", scope="demo", redirect_uri=REDIRECT,
                           code_challenge_method="S256",
                           token_endpoint_auth_method="client_secret_basic")
    verifier = generate_token(64)
    url, state = client.create_authorization_url(BASE + "/oauth2/authorize",
                                                 code_verifier=verifier)
    b = Browser()
    r = b.get(url)
    assert r.status_code == 303 and r.headers["Location"].startswith("/login?"), r.text
    page = b.get(r.headers["Location"]).text
    r = b.post("/login", {"username": "bob", "password": "secret",
                          "csrf_token": field(page, "csrf_token"),
                          "request": field(page, "request")})
    assert r.status_code == 303, r.text
    page = b.get(r.headers["Location"]).text
    r = b.post("/consent", {"decision": decision, "csrf_token": field(page, "csrf_token"),
                            "request": field(page, "request")})
    assert r.status_code == 303, r.text
    return client, verifier, state, r.headers["Location"]


def code_refresh_revoke():
    client, verifier, state, location = authorize("allow")
    q = parse_qs(urlparse(location).query)
    assert location.startswith(REDIRECT), location
    assert q["iss"] == [ISSUER], q  # RFC 9207, checked by hand: authlib does not yet
    # authlib checks `state` against the one it generated and sends the verifier.
    token = client.fetch_token(TOKEN_URL, authorization_response=location, state=state,
                               code_verifier=verifier)
    assert token["token_type"].lower() == "bearer", token
    assert token["scope"] == "demo", token
    first_refresh = token["refresh_token"]

    # Refresh: a new pair, the old refresh token rotated away.
    new = client.refresh_token(TOKEN_URL, refresh_token=first_refresh)
    assert new["access_token"] != token["access_token"]
    assert new["refresh_token"] != first_refresh, "refresh tokens rotate"

    info = client.introspect_token(BASE + "/oauth2/introspect", token=new["access_token"]).json()
    assert info["active"] is True and info["sub"] == "bob", info

    # Revoke the current refresh token: the grant ends, its access token goes inactive.
    r = client.revoke_token(BASE + "/oauth2/revoke", token=new["refresh_token"],
                            token_type_hint="refresh_token")
    assert r.status_code == 200, r.text
    info = client.introspect_token(BASE + "/oauth2/introspect", token=new["access_token"]).json()
    assert info == {"active": False}, info
    try:
        client.refresh_token(TOKEN_URL, refresh_token=new["refresh_token"])
    except OAuthError as e:
        assert e.error == "invalid_grant", repr(e)
    else:
        raise AssertionError("a revoked refresh token still worked")


def reused_refresh_token_is_refused():
    client, verifier, state, location = authorize("allow")
    token = client.fetch_token(TOKEN_URL, authorization_response=location, state=state,
                               code_verifier=verifier)
    client.refresh_token(TOKEN_URL, refresh_token=token["refresh_token"])
    try:
        client.refresh_token(TOKEN_URL, refresh_token=token["refresh_token"])
    except OAuthError as e:
        assert e.error == "invalid_grant", repr(e)
    else:
        raise AssertionError("a rotated-away refresh token worked again")


def deny_is_access_denied():
    _, _, state, location = authorize("deny")
    q = parse_qs(urlparse(location).query)
    assert location.startswith(REDIRECT), location
    assert q["error"] == ["access_denied"] and q["state"] == [state], q
    assert q["iss"] == [ISSUER] and "code" not in q, q


CHECKS = [code_refresh_revoke, reused_refresh_token_is_refused, deny_is_access_denied]

passed = failed = 0
for check in CHECKS:
    try:
        check()
        passed += 1
        print(f"ok   {check.__name__}")
    except Exception:  # report every failure, not just the first
        failed += 1
        print(f"FAIL {check.__name__}")
        traceback.print_exc(file=sys.stdout)
print(f"authlib: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
