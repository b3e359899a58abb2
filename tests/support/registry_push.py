"""Push images from tests/support/imagebuilder.py to a registry with plain HTTP requests.

Independent of ociboot on purpose (the code under test must not push its own fixtures): the
distribution-spec push flow (spec.md "Pushing blobs": POST then monolithic PUT; "Pushing
Manifests": PUT by tag and by digest), with Basic or bearer-token auth done the simple way.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import requests

from tests.support.imagebuilder import Blob, BuiltImage, BuiltIndex


class PushError(RuntimeError):
    pass


@dataclass
class Pusher:
    base_url: str  # http://127.0.0.1:PORT
    username: str | None = None
    password: str | None = None
    verify: bool | str = True
    _session: requests.Session = field(default_factory=requests.Session)
    _auth: dict[str, str] = field(default_factory=dict)  # repository -> Authorization

    def _authorize(self, repo: str, response: requests.Response) -> None:
        challenge = response.headers.get("WWW-Authenticate", "")
        basic = (self.username or "", self.password or "")
        if challenge.lower().startswith("basic"):
            self._auth[repo] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {"service": params.get("service", ""), "scope": f"repository:{repo}:pull,push"}
        for attempt in range(2):
            try:
                token = self._session.get(
                    params["realm"], params=query, auth=basic if self.username else None, timeout=10
                )
                break
            except requests.ConnectionError:
                # Once in CI the test token service closed a token request unanswered (it now
                # records why: TokenService.errors); a GET is asked again, as ociboot would.
                if attempt:
                    raise
        if token.status_code != 200:
            raise PushError(f"token service said {token.status_code}: {token.text}")
        self._auth[repo] = "Bearer " + token.json()["token"]

    def request(self, method: str, repo: str, url: str, **kwargs: Any) -> requests.Response:
        if not url.startswith("http"):
            url = urllib.parse.urljoin(self.base_url, url)
        for _ in range(2):
            headers = dict(kwargs.pop("headers", {}) or {})
            if repo in self._auth:
                headers["Authorization"] = self._auth[repo]
            response = self._session.request(
                method, url, headers=headers, verify=self.verify, timeout=30, **kwargs
            )
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response.status_code != 401:
                return response
            self._authorize(repo, response)
        raise PushError(f"{method} {url}: 401 after authenticating: {response.text}")

    def push_blob(self, repo: str, blob: Blob | tuple[str, bytes | BinaryIO]) -> None:
        """Push a blob unless the repository has it; an open file is streamed (bench/'s large
        layers), which suits only a registry that does not ask for credentials mid-upload."""
        digest, data = (blob.digest, blob.data) if isinstance(blob, Blob) else blob
        if self.request("HEAD", repo, f"/v2/{repo}/blobs/{digest}").status_code == 200:
            return
        started = self.request("POST", repo, f"/v2/{repo}/blobs/uploads/")
        if started.status_code != 202:
            raise PushError(f"upload start for {digest}: {started.status_code} {started.text}")
        location = started.headers["Location"]
        sep = "&" if "?" in location else "?"
        done = self.request(
            "PUT",
            repo,
            f"{location}{sep}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise PushError(f"upload of {digest}: {done.status_code} {done.text}")

    def push_manifest(self, repo: str, reference: str, manifest: Blob) -> None:
        response = self.request(
            "PUT",
            repo,
            f"/v2/{repo}/manifests/{reference}",
            data=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        if response.status_code != 201:
            raise PushError(f"manifest {repo}:{reference}: {response.status_code} {response.text}")

    def push(self, repo: str, image: BuiltImage | BuiltIndex, tag: str | None = None) -> str:
        """Push an image or an index (children first), by digest and, if given, by tag."""
        if isinstance(image, BuiltIndex):
            for child in image.children:
                self.push(repo, child)
        else:
            for layer in image.layers:
                self.push_blob(repo, layer)
            self.push_blob(repo, image.config)
        self.push_manifest(repo, image.digest, image.manifest)
        if tag is not None:
            self.push_manifest(repo, tag, image.manifest)
        return image.digest
