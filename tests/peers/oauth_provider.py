"""A loopback OAuth 2.0 / OpenID Connect provider built on Authlib's server components, playing
a Google-like OIDC provider and a GitHub-like OAuth app at once, with PKCE (S256) enforced."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, TokenMixin, scope_to_list
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode, UserInfo, UserInfoEndpoint
from flask import Flask, Response, g, jsonify, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

CODE_LIFETIME_SECONDS = 60
OIDC_SCOPES = ["openid", "email", "profile"]
GITHUB_SCOPES = ["read:user", "user:email"]


@dataclass(frozen=True)
class OIDCUser:
    """The person the OIDC role signs in; frozen so an issued code keeps who it was issued for."""

    sub: str
    email: str
    email_verified: bool = True
    name: str | None = None

    def claims(self, scope: str) -> UserInfo:
        """The standard claims this person releases for `scope`, as id token and userinfo carry them."""
        return UserInfo(sub=self.sub, email=self.email, email_verified=self.email_verified,
                        name=self.name).filter(scope)


@dataclass(frozen=True)
class GitHubUser:
    """The account the GitHub role signs in; `emails` is what `/api/user/emails` lists."""

    id: int
    login: str
    name: str | None = None
    public_email: str | None = None
    emails: tuple[dict[str, Any], ...] = ()


@dataclass
class Client(ClientMixin):
    """A confidential client; `redirect_uris=None` accepts any redirect URI."""

    client_id: str
    client_secret: str
    redirect_uris: list[str] | None = None
    client_metadata: dict[str, Any] = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = OIDC_SCOPES + GITHUB_SCOPES
        return " ".join(s for s in scope_to_list(scope) or [] if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return self.redirect_uris is None or redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint != "token" or method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthCode(AuthorizationCodeMixin):
    """An issued authorization code with its PKCE challenge and OIDC nonce."""

    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    user: OIDCUser | GitHubUser
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class Token(TokenMixin):
    """An issued access token."""

    access_token: str
    client: Client
    user: OIDCUser | GitHubUser
    scope: str
    expires_at: float

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> OIDCUser | GitHubUser:
        return self.user

    def get_client(self) -> Client:
        return self.client


class _Server(AuthorizationServer):
    """Authlib's Flask server, carrying the provider its grants and extensions store into."""

    provider: OAuthProvider


class _CodeGrant(AuthorizationCodeGrant):
    """Authorization-code grant over the provider's in-memory code store."""

    server: _Server

    def save_authorization_code(self, code: str, req: Any) -> None:
        data, provider = req.payload.data, self.server.provider
        with provider._lock:
            provider._codes[code] = AuthCode(
                code=code, client_id=req.client.client_id, redirect_uri=req.payload.redirect_uri,
                scope=req.scope, user=req.user, nonce=data.get("nonce"), code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"], auth_time=int(time.time()),
                expires_at=time.time() + CODE_LIFETIME_SECONDS)

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        provider = self.server.provider
        with provider._lock:
            found = provider._codes.get(code)
        if found and found.client_id == client.client_id and time.time() < found.expires_at:
            return found
        return None

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        with self.server.provider._lock:
            self.server.provider._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthCode) -> OIDCUser | GitHubUser:
        return authorization_code.user


class _S256Challenge(CodeChallenge):
    """PKCE with S256 only, required at the authorize step too (Authlib only demands it of public clients)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: _CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge'")
        # A missing method means "plain" per RFC 7636, which this provider refuses.
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be 'S256'")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: _CodeGrant, result: Any) -> None:
        super().validate_code_verifier(grant, result)
        # Authlib returns silently only after comparing the verifier with a stored challenge.
        code: AuthCode = grant.request.authorization_code
        g.pkce_verified = bool(code.code_challenge) and code.code_challenge_method == "S256"


class _OpenIDCode(OpenIDCode):
    """Id tokens signed RS256 with the provider's key; its kid comes from the key set."""

    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, req: Any) -> bool:
        with self.provider._lock:
            codes = list(self.provider._codes.values())
        return any(c.client_id == req.payload.client_id and c.nonce == nonce for c in codes)

    def resolve_client_private_key(self, client: Client) -> KeySet:
        return self.provider._keys

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.url, "aud": client.client_id}

    def generate_user_info(self, user: OIDCUser, scope: str) -> UserInfo:
        return user.claims(scope)


class _UserInfoEndpoint(UserInfoEndpoint):
    """OIDC userinfo as plain JSON."""

    def generate_user_info(self, user: OIDCUser, scope: str) -> UserInfo:
        return user.claims(scope)


class _TokenValidator(BearerTokenValidator):
    """Looks access tokens up in the provider's store, for one `Authorization` scheme."""

    def __init__(self, provider: OAuthProvider, scheme: str) -> None:
        super().__init__()
        self.provider = provider
        self.TOKEN_TYPE = scheme

    def authenticate_token(self, token_string: str) -> Token | None:
        with self.provider._lock:
            return self.provider._tokens.get(token_string)


class _QuietHandler(WSGIRequestHandler):
    """Keeps the access log out of test output; errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class OAuthProvider:
    """Start with `with OAuthProvider() as provider:`; the authorize endpoints approve at once as
    the current test user, or refuse once after `deny_next()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._codes: dict[str, AuthCode] = {}
        self._tokens: dict[str, Token] = {}
        self._token_requests: list[dict[str, Any]] = []
        self._deny_next = False
        self._keys = KeySet([RSAKey.generate_key(2048, {"alg": "RS256", "use": "sig"}, auto_kid=True)])
        self.oidc_user = OIDCUser(sub="google-user-1", email="user@example.com", name="Test User")
        self.github_user = GitHubUser(id=1001, login="octocat", name="The Octocat", emails=(
            {"email": "octocat@example.com", "primary": True, "verified": True, "visibility": "private"},))
        self.register_client("google-client", "google-secret")
        self.register_client("github-client", "github-secret")
        self._server = make_server("127.0.0.1", 0, self._build_app(), threaded=True,
                                   request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.google_metadata_url = f"{self.url}/.well-known/openid-configuration"
        self.github_authorize_url = f"{self.url}/login/oauth/authorize"
        self.github_token_url = f"{self.url}/login/oauth/access_token"
        self.github_api_base_url = f"{self.url}/api/"
        # shutdown() waits up to one poll interval; the default 0.5 s would slow every test.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="oauth-provider", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> OAuthProvider:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def register_client(self, client_id: str, client_secret: str,
                        redirect_uris: list[str] | None = None) -> None:
        """Add or replace a client; without `redirect_uris` any redirect URI is accepted."""
        with self._lock:
            self._clients[client_id] = Client(client_id, client_secret, redirect_uris)

    def set_user(self, *, sub: str, email: str, email_verified: bool = True, name: str | None = None) -> None:
        """Make the OIDC role sign in as this person from the next authorize on."""
        self.oidc_user = OIDCUser(sub, email, email_verified, name)

    def set_github_user(self, *, id: int, login: str, name: str | None = None, public_email: str | None = None,
                        emails: list[dict[str, Any]] | None = None) -> None:
        """Make the GitHub role sign in as this account; `visibility` defaults as GitHub shows it."""
        listed = [{"visibility": "public" if e["email"] == public_email else
                   ("private" if e.get("primary") else None), **e} for e in emails or []]
        self.github_user = GitHubUser(id, login, name, public_email, tuple(listed))

    def deny_next(self) -> None:
        """Answer the next valid authorize request with `access_denied`, as a user clicking Cancel."""
        with self._lock:
            self._deny_next = True

    @property
    def token_requests(self) -> list[dict[str, Any]]:
        """Every token request's outcome, oldest first."""
        with self._lock:
            return [dict(r) for r in self._token_requests]

    def _query_client(self, client_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        with self._lock:
            self._tokens[token["access_token"]] = Token(
                token["access_token"], req.client, req.user, token.get("scope", ""),
                time.time() + token["expires_in"])

    def _openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.url, "authorization_endpoint": f"{self.url}/oauth/authorize",
            "token_endpoint": f"{self.url}/oauth/token", "jwks_uri": f"{self.url}/oauth/jwks",
            "userinfo_endpoint": f"{self.url}/oauth/userinfo", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"], "scopes_supported": OIDC_SCOPES,
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["iss", "aud", "sub", "email", "email_verified", "name", "nonce",
                                 "iat", "exp", "auth_time"]}

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 3600}
        server = _Server(app, query_client=self._query_client, save_token=self._save_token)
        server.provider = self
        server.register_grant(_CodeGrant, [_S256Challenge(required=True), _OpenIDCode(self)])
        protector = ResourceProtector()
        # GitHub takes `Authorization: token <t>` as well as the standard bearer scheme.
        for scheme in ("bearer", "token"):
            protector.register_token_validator(_TokenValidator(self, scheme))
        server.register_endpoint(_UserInfoEndpoint(resource_protector=protector))

        def authorize(user: OIDCUser | GitHubUser) -> Response:
            try:
                grant = server.get_consent_grant(end_user=user)
            except OAuth2Error as error:
                return server.handle_error_response(None, error)
            with self._lock:
                deny, self._deny_next = self._deny_next, False
            return server.create_authorization_response(grant=grant, grant_user=None if deny else user)

        def token(role: str) -> Response:
            g.pkce_verified = False
            response = server.create_token_response()
            body = response.get_json()
            auth = request.authorization
            with self._lock:
                self._token_requests.append({
                    "role": role, "grant_type": request.form.get("grant_type"),
                    "client_id": request.form.get("client_id") or (auth.username if auth else None),
                    "code_verifier_present": bool(request.form.get("code_verifier")),
                    "pkce_verified": g.pkce_verified, "status": response.status_code, "error": body.get("error")})
            return response

        def github_user(scope: str | None = None) -> GitHubUser:
            with protector.acquire(scope) as token:
                # A token from the OIDC role must not unlock the GitHub API.
                if not isinstance(token.user, GitHubUser):
                    raise InvalidTokenError()
                return token.user

        def github_profile() -> Response:
            user = github_user()
            return jsonify({"id": user.id, "login": user.login, "name": user.name, "email": user.public_email})

        def github_token() -> Response:
            response = token("github")
            if "json" in request.headers.get("Accept", ""):
                return response
            # GitHub answers form-encoded unless the client asks for JSON.
            return Response(urlencode(response.get_json()), status=response.status_code,
                            content_type="application/x-www-form-urlencoded")

        routes: list[tuple[str, list[str], Callable[[], Response]]] = [
            ("/.well-known/openid-configuration", ["GET"], lambda: jsonify(self._openid_configuration())),
            ("/oauth/jwks", ["GET"], lambda: jsonify(self._keys.as_dict(private=False))),
            ("/oauth/authorize", ["GET"], lambda: authorize(self.oidc_user)),
            ("/oauth/token", ["POST"], lambda: token("oidc")),
            ("/oauth/userinfo", ["GET", "POST"], lambda: server.create_endpoint_response("userinfo")),
            ("/login/oauth/authorize", ["GET"], lambda: authorize(self.github_user)),
            ("/login/oauth/access_token", ["POST"], github_token),
            ("/api/user", ["GET"], github_profile),
            ("/api/user/emails", ["GET"], lambda: jsonify(list(github_user("user:email").emails))),
        ]
        for path, methods, view in routes:
            app.add_url_rule(path, path, view, methods=methods)
        return app
