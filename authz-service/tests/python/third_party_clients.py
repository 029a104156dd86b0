"""Tries the authz-service as an outsider would: authlib as the OAuth client, PyJWT as the
resource server verifying our tokens against our JWKS, authlib's RFC 8414 metadata checks.

Usage: third_party_clients.py BASE_URL ISSUER DEMO_PRIVATE_KEY_PEM
BASE_URL is where the service listens; ISSUER is its configured issuer (the audience of
assertions is ISSUER + "/oauth2/token"). Prints one line per check and exits non-zero on failure.
"""

import sys
import traceback

import jwt
import requests
from authlib.integrations.requests_client import AssertionSession, OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc.jwk import OKPKey  # authlib's own key type since 1.7

BASE, ISSUER, PEM_PATH = sys.argv[1], sys.argv[2], sys.argv[3]
TOKEN_URL = BASE + "/oauth2/token"
TOKEN_AUD = ISSUER + "/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

with open(PEM_PATH, encoding="ascii") as f:
    DEMO_KEY = OKPKey.import_key(f.read())

jwks_client = jwt.PyJWKClient(BASE + "/.well-known/jwks.json")


def verify(access_token, subject, client_id):
    """PyJWT checks signature, issuer, audience and times against our published JWKS."""
    header = jwt.get_unverified_header(access_token)
    assert header["typ"] == "at+jwt", header
    key = jwks_client.get_signing_key_from_jwt(access_token)
    claims = jwt.decode(
        access_token,
        key,
        algorithms=["EdDSA", "ES256", "RS256"],
        audience="wasmgate-api",
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]},
    )
    assert claims["sub"] == subject, claims
    assert claims["client_id"] == client_id, claims
    assert claims["scope"] == "demo", claims
    # A tampered token must not verify.
    head, body, sig = access_token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    try:
        jwt.decode(".".join([head, body, flipped]), key, algorithms=[header["alg"]],
                   audience="wasmgate-api", issuer=ISSUER)
    except jwt.InvalidSignatureError:
        pass
    else:
        raise AssertionError("a tampered token verified")


def metadata():
    doc = requests.get(BASE + "/.well-known/oauth-authorization-server", timeout=10).json()
    meta = AuthorizationServerMetadata(doc)
    # authlib runs every RFC 8414 check it has (and raises on the first failure).
    meta.validate()
    for grant in ["client_credentials", JWT_BEARER]:
        assert grant in doc["grant_types_supported"], doc
    for method in ["client_secret_basic", "client_secret_post", "private_key_jwt"]:
        assert method in doc["token_endpoint_auth_methods_supported"], doc
    assert doc["issuer"] == ISSUER


def client_secret_basic():
    s = OAuth2Session("123", "secret", token_endpoint_auth_method="client_secret_basic")
    token = s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer", token
    verify(token["access_token"], "123", "123")


def client_secret_post():
    s = OAuth2Session("123", "secret", token_endpoint_auth_method="client_secret_post")
    token = s.fetch_token(TOKEN_URL, grant_type="client_credentials", scope="demo")
    verify(token["access_token"], "123", "123")


def wrong_secret_is_invalid_client():
    s = OAuth2Session("123", "not-it", token_endpoint_auth_method="client_secret_basic")
    try:
        s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    except Exception as e:  # authlib raises OAuthError with the RFC 6749 code
        assert getattr(e, "error", None) == "invalid_client", repr(e)
    else:
        raise AssertionError("a wrong secret got a token")


def private_key_jwt():
    s = OAuth2Session(
        "jwt-demo",
        DEMO_KEY,
        token_endpoint_auth_method=PrivateKeyJWT(TOKEN_AUD, alg="EdDSA"),
    )
    token = s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    verify(token["access_token"], "jwt-demo", "jwt-demo")


def jwt_bearer_grant():
    s = AssertionSession(
        token_endpoint=TOKEN_URL,
        issuer="jwt-demo",
        subject="bob",
        audience=TOKEN_AUD,
        grant_type=JWT_BEARER,
        key=DEMO_KEY,
        alg="EdDSA",
    )
    token = s.refresh_token()  # authlib's call for "get a token with a fresh assertion"
    verify(token["access_token"], "bob", "jwt-demo")
    # A second call signs a new assertion (new jti) and succeeds too.
    again = s.refresh_token()
    assert again["access_token"] != token["access_token"]


CHECKS = [metadata, client_secret_basic, client_secret_post, wrong_secret_is_invalid_client,
          private_key_jwt, jwt_bearer_grant]

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
print(f"python: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
