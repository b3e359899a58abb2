"""Registry auth: answering a 401 with a bearer token (docker token auth spec) or Basic (RFC 7617).

Tokens are cached per scope in the run's RegistryClient (a registry answers 401 for a new scope
and for an expired token, so one token per registry is not enough).  Token requests follow no
redirect to another origin and never go to a plain-HTTP realm unless the registry itself is
plain HTTP by the user's choice.  Remote text is scrubbed of our secrets before it is shown.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from typing import Any
from urllib.parse import urljoin, urlsplit

from ...errors import AuthenticationError, RegistryError
from ...ref import ImageRef
from .. import SourceOptions
from ..auth import Challenge, Credentials, find_credentials, parse_challenge
from .client import RegistryClient
from .transport import MAX_ERROR_BODY, TEMPORARY, Budget, Response, Transfer, metered, read_capped, send

#: Redirects a token request follows, all within the realm's own origin.
MAX_TOKEN_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _identity(creds: Credentials | None) -> str:
    if creds is None:
        return ""
    secret = f"{creds.username}\0{creds.password}\0{creds.identity_token or ''}"
    return hashlib.sha256(secret.encode()).hexdigest()


class Authenticator:
    """The credentials and tokens of one repository (and `scopes` on it) at one registry."""

    def __init__(
        self,
        client: RegistryClient,
        ref: ImageRef,
        options: SourceOptions,
        scheme: str,
        scopes: tuple[str, ...],
    ) -> None:
        self._client = client
        self._ref = ref
        self._options = options
        self._scheme = scheme
        self._host = ref.api_host
        self._scopes = scopes
        self._lock = threading.Lock()
        self._creds: Credentials | None = None
        self._creds_loaded = False
        self._basic = False  # the registry asked for Basic: send it pre-emptively from now on
        self._bearer: tuple[str, ...] | None = None  # token cache key once a Bearer challenge came

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._creds_loaded:
                self._creds = find_credentials(self._ref.registry, self._options, self._ref.repository)
                self._creds_loaded = True
            return self._creds

    def header(self) -> dict[str, str]:
        tokens = self._client.tokens
        if self._bearer is not None and (token := tokens.get(self._bearer)):
            return {"Authorization": f"Bearer {token}"}
        if self._basic and (creds := self.credentials()) is not None:
            pair = f"{creds.username}:{creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def answer(self, response: Response, sent: str | None, budget: Budget) -> None:
        """Act on a 401: fetch or refresh a token, or go Basic; else an AuthenticationError."""
        if response.status_code == 403:
            raise self.error(response)
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        creds = self.credentials()
        if challenge is not None and challenge.scheme == "bearer" and challenge.params.get("realm"):
            self._fetch_token(challenge, creds, sent, budget)
            return
        if challenge is not None and challenge.scheme == "basic" and creds is not None:
            if self._basic and sent is not None:
                raise self.error(response)  # we sent them: refused
            self._basic = True
            return
        raise self.error(response)

    def _fetch_token(
        self, challenge: Challenge, creds: Credentials | None, sent: str | None, budget: Budget
    ) -> None:
        realm, service = challenge.params["realm"], challenge.params.get("service", "")
        self._check_realm(realm)
        tokens = self._client.tokens
        scope = " ".join(self._scopes)
        key = (realm, service, _identity(creds), scope)
        if sent is not None and sent.startswith("Bearer "):
            tokens.drop(key, sent[7:])  # rejected: expired, or lacking this scope
        elif tokens.get(key) is not None:
            self._bearer = key  # another source already holds a token for this scope
            return
        # The challenge may name scopes we did not (space-separated, token spec): ask for those too.
        scopes = merged_scopes(self._scopes, challenge.params.get("scope", "").split())
        transfer = Transfer(budget, f"token from {realm}")
        with self._token_request(realm, creds, service, scopes, transfer) as answer:
            if answer.status_code in (401, 403):
                raise self.error(answer, token_realm=realm)
            if answer.status_code != 200:
                raise RegistryError(
                    f"token service {realm} answered {answer.status_code} for {scope}",
                    status=answer.status_code,
                    temporary=answer.status_code in TEMPORARY,
                )
            with metered(transfer):
                body = read_capped(answer, MAX_ERROR_BODY, f"token from {realm}")
        try:
            payload = json.loads(body)
            token = payload.get("token") or payload.get("access_token")
            lifetime = float(payload.get("expires_in") or 60)  # token spec default: 60 s
        except (ValueError, TypeError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"token service {realm} gave no token for {scope}")
        # Renew a little early so a token does not expire between our check and the registry's.
        tokens.put(key, token, max(lifetime - 10, 1))
        self._bearer = key

    def _check_realm(self, realm: str) -> None:
        """A token request carries credentials: never in clear text unless the user chose plain
        HTTP for the registry itself (--plain-http, or a loopback host)."""
        scheme = urlsplit(realm).scheme.lower()
        if scheme == "https" or (scheme == "http" and self._scheme == "http"):
            return
        if scheme == "http":
            raise AuthenticationError(
                f"{self._host} (HTTPS) names a plain-HTTP token realm {realm}: refusing to send "
                "credentials in clear text"
            )
        raise AuthenticationError(f"{self._host} names a token realm that is not an http(s) URL: {realm!r}")

    def _token_request(
        self, realm: str, creds: Credentials | None, service: str, scopes: list[str], transfer: Transfer
    ) -> Response:
        """The token endpoint's answer.  Redirects are followed only within the realm's origin
        (scheme, host, port): requests would re-send a POSTed refresh token to any host on 307."""
        session = self._client.session(self._scheme, self._host, self._options)
        options: dict[str, Any] = {"allow_redirects": False, "host": self._host, "scrub": self.scrub}
        form: dict[str, str] | None = None
        if creds is not None and creds.identity_token:
            # OAuth2 refresh-token grant (docker token spec, oauth.md).
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": service,
                "scope": " ".join(scopes),
                "client_id": "ociboot",
            }
            answer = send(session, transfer, "POST", realm, data=form, **options)
        else:
            options["auth"] = (creds.username, creds.password) if creds is not None else None
            params = {"service": service, "scope": scopes}
            answer = send(session, transfer, "GET", realm, params=params, **options)
        for _ in range(MAX_TOKEN_REDIRECTS):
            if answer.status_code not in REDIRECTS:
                return answer
            target = urljoin(answer.url, answer.headers.get("Location", ""))
            answer.close()
            if _origin(target) != _origin(realm):
                raise AuthenticationError(
                    f"token service {realm} redirected to {_origin_text(target)}: a token request "
                    "carries credentials and is not sent to another host"
                )
            method = answer.request.method or "GET"
            body = form if method == "POST" else None
            answer = send(session, transfer, method, target, data=body, **options)
        if answer.status_code in REDIRECTS:
            answer.close()
            raise AuthenticationError(f"token service {realm} redirected over {MAX_TOKEN_REDIRECTS} times")
        return answer

    def scrub(self, text: str) -> str:
        """Remote text with our secrets masked: a hostile registry may echo what we sent it."""
        creds = self._creds
        secrets = []
        if creds is not None:
            pair = f"{creds.username}:{creds.password}".encode()
            secrets += [base64.b64encode(pair).decode(), creds.password, creds.identity_token or ""]
        if self._bearer is not None and (token := self._client.tokens.get(self._bearer)):
            secrets.append(token)
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def error(self, response: Response, token_realm: str | None = None) -> AuthenticationError:
        status = self.scrub(f"{response.status_code} {response.reason or ''}".strip())
        creds = self.credentials()
        # A listing of the whole registry (its catalog) is for no repository.
        of = f" for repository {self._ref.repository}" if self._ref.repository else ""
        where = f"from {self._host}{of}"
        if token_realm is not None:
            where = f"from token service {token_realm}{of}"
        if creds is None:
            hint = "no credentials found: check --creds or the authfile"
        else:
            hint = f"credentials from {creds.source or 'the authfile'} were refused or lack access"
        return AuthenticationError(f"{status} {where}: {hint}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def same_origin(url: str, other: str) -> bool:
    return _origin(url) == _origin(other)


def merged_scopes(ours: tuple[str, ...] | list[str], named: list[str]) -> list[str]:
    """Our scopes with the actions a challenge names added, one scope per resource.

    A scope is `type:name:actions`; distribution lists a challenge's actions in no fixed order
    (`push,pull` after we asked for `pull,push`), so scopes compare by resource and action set."""
    merged: dict[str, list[str]] = {}
    for scope in (*ours, *named):
        resource, _, actions = scope.rpartition(":")
        known = merged.setdefault(resource, [])
        known += [a for a in actions.split(",") if a and a not in known]
    return [f"{resource}:{','.join(actions)}" for resource, actions in merged.items()]
