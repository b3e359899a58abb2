"""Endpoint: one repository of one registry as one image's transfers see it.

It owns what every request to the repository needs: the scheme (HTTPS unless the user chose
plain HTTP or the host is loopback), the image's network budget, auth, and bounded retries
(429 honouring Retry-After, 502/503/504, resets and timeouts only; a stall once); and the GET
of a small JSON document (a manifest, a listing page, a referrers list), read whole and capped.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ImageNotFound, InvalidManifest, RegistryError
from ...ref import ImageRef
from ...spec import MAX_MANIFEST_BYTES
from ...textsafe import shortened
from .. import SourceOptions
from .client import RegistryClient
from .token import Authenticator
from .transport import (
    MAX_ERROR_BODY,
    TEMPORARY,
    Budget,
    Response,
    Session,
    Transfer,
    metered,
    read_capped,
    send,
)

MAX_RETRY_AFTER = 10.0
NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"})
_FOUND = frozenset({200})
_FOUND_OR_NOT = frozenset({200, 404})


@dataclass(frozen=True, slots=True)
class Document:
    """A JSON document as the registry sent it, believed for nothing but its size: the caller
    parses `body` and checks it against what it asked for."""

    body: bytes
    media_type: str | None  # Content-Type without its parameters; None when not sent
    link: str  # the Link header ("" when none): a listing's next page
    content_digest: str | None  # the Docker-Content-Digest header, unparsed


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def uses_plain_http(host: str, options: SourceOptions) -> bool:
    """HTTP, not HTTPS, to `host`: what the user chose (--plain-http), else only for loopback."""
    return options.plain_http if options.plain_http is not None else is_loopback(host)


def display(ref: ImageRef) -> str:
    text = f"{ref.registry}/{ref.repository}"
    if ref.tag:
        text += f":{ref.tag}"
    if ref.digest:
        text += f"@{ref.digest}"
    return text


class Endpoint:
    def __init__(
        self,
        client: RegistryClient,
        ref: ImageRef,
        options: SourceOptions,
        scopes: tuple[str, ...] | None = None,
        *,
        label: str | None = None,
    ) -> None:
        self.client = client
        self.ref = ref
        self.options = options
        self.host = ref.api_host
        self.scheme = "http" if uses_plain_http(self.host, options) else "https"
        client.tls(options)  # a bad --cert-dir is an error now, not at the first request
        self.budget = Budget(options, label or display(ref))  # label: what messages name
        scopes = scopes or (f"repository:{ref.repository}:pull",)
        self.auth = Authenticator(client, ref, options, self.scheme, scopes)

    def url(self, kind: str, reference: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{self.ref.repository}/{kind}/{reference}"

    def session(self) -> Session:
        return self.client.session(self.scheme, self.host, self.options)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        *,
        allow: frozenset[int] = frozenset({200}),
        data: Any = None,
    ) -> tuple[Response, Transfer]:
        """A request with our auth and bounded retries: a response with a status in `allow` and
        the transfer its body's reads belong to, else an error.  A request with a streamed body
        (`data` that is not bytes) is sent once: its stream cannot be read again."""
        attempt = auth_rounds = 0
        again = data is None or isinstance(data, bytes)
        while True:
            sent = {**headers, **self.auth.header()}
            transfer = Transfer(self.budget, f"{what} from {self.host}")
            try:
                response = send(
                    self.session(),
                    transfer,
                    method,
                    url,
                    headers=sent,
                    data=data,
                    allow_redirects=method in ("GET", "HEAD"),
                    host=self.host,
                    scrub=self.auth.scrub,
                )
            except RegistryError as error:  # no answer: refused, reset, stalled, out of time
                if not error.temporary or not again or attempt >= self.options.retries:
                    raise
                attempt += 1
                self.budget.sleep(min(0.25 * 2**attempt, 2.0), what)
                continue
            if response.status_code in allow:
                return response, transfer
            if response.status_code == 401 and auth_rounds < 2 and again:
                response.close()
                auth_rounds += 1
                self.auth.answer(response, sent.get("Authorization"), self.budget)
                continue
            if response.status_code not in TEMPORARY or not again or attempt >= self.options.retries:
                raise self.status_error(response, what, transfer)
            attempt += 1
            wait = self._retry_after(response, attempt)
            response.close()
            self.budget.sleep(wait, what)

    def get_document(self, url: str, accept: str, what: str) -> Document:
        """GET a JSON document of at most MAX_MANIFEST_BYTES: a Content-Length over the cap is
        refused before the body is read, the body is read metered and capped, and a connection
        dropped mid-body is asked again (a GET is idempotent; --retries bounds it).  InvalidManifest
        for a document over the cap, ImageNotFound for one the registry does not have."""
        found = self._document(url, accept, what, _FOUND)
        assert found is not None  # (only a status in _FOUND comes back)
        return found

    def find_document(self, url: str, accept: str, what: str) -> Document | None:
        """get_document, or None when the registry answers 404.  Only a 404: another status
        carrying a not-found code is an error (for the referrers API, a 404 alone says the API
        is unavailable, distribution-spec "Listing Referrers")."""
        return self._document(url, accept, what, _FOUND_OR_NOT)

    def _document(self, url: str, accept: str, what: str, allow: frozenset[int]) -> Document | None:
        attempt = 0
        while True:
            response, transfer = self.request("GET", url, {"Accept": accept}, what, allow=allow)
            try:
                if response.status_code == 404:
                    return None
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                    raise InvalidManifest(f"{what} is {length} bytes, over the {MAX_MANIFEST_BYTES} byte cap")
                with metered(transfer):
                    body = read_capped(response, MAX_MANIFEST_BYTES + 1, what)
                break
            except RegistryError as error:
                if not error.temporary or attempt >= self.options.retries:
                    raise
                attempt += 1
            finally:
                response.close()
        if len(body) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"{what} is over the {MAX_MANIFEST_BYTES} byte cap")
        headers = response.headers
        return Document(
            body,
            headers.get("Content-Type", "").split(";")[0].strip() or None,
            headers.get("Link", ""),
            headers.get("Docker-Content-Digest"),
        )

    @staticmethod
    def _retry_after(response: Response, attempt: int) -> float:
        value = response.headers.get("Retry-After", "").strip()
        if value.isdigit():  # RFC 9110 section 10.2.3; the HTTP-date form falls back to backoff
            return min(float(value), MAX_RETRY_AFTER)
        return min(0.25 * 2**attempt, 2.0)

    def status_error(self, response: Response, what: str, transfer: Transfer) -> Exception:
        status = response.status_code
        try:
            with metered(transfer):
                body = read_capped(response, MAX_ERROR_BODY, what)
        except RegistryError:
            body = b""
        finally:
            response.close()
        codes, messages = _error_codes(body)
        codes = tuple(self.auth.scrub(c) for c in codes)
        if status in (401, 403):
            return self.auth.error(response)
        if status == 404 or NOT_FOUND_CODES.intersection(codes):
            return ImageNotFound(
                f"{what} not found ({', '.join(codes) or status}): {display(self.ref)}", status=status
            )
        # The reason phrase and the codes are the registry's text as much as the messages: any
        # of them may echo what we sent.
        detail = shortened(self.auth.scrub("; ".join(messages) or response.reason or ""), MAX_ERROR_DETAIL)
        return RegistryError(
            f"{self.host} answered {status} for {what}: {detail}".rstrip(": "),
            status=status,
            codes=codes,
            temporary=status in TEMPORARY,
        )


#: What an error message quotes of a registry's error body: it is the registry's text, and a
#: message is one line (an audit record keeps it; MAX_RECORD_BYTES bounds those).
MAX_ERROR_DETAIL = 500


def _error_codes(body: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Codes and messages of an OCI error body (distribution-spec "Error Codes")."""
    try:
        errors = json.loads(body).get("errors") or []
        codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict) and e.get("code"))
        messages = tuple(
            str(e.get("message", "")) for e in errors if isinstance(e, dict) and e.get("message")
        )
    except (ValueError, AttributeError, TypeError):
        return (), ()
    return codes, messages
