"""The lab's admin client for a real kube-apiserver: what kubectl does, over HTTPS with the admin
client certificate, as plain JSON (no client models). The same verbs as the emulator's client,
plus a generic request() for any resource."""
from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from typing import Optional


USER_AGENT = "overlayd-lab"          # how the API server's audit log tells the lab's own requests


class KubeApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpsApiClient:
    def __init__(self, url: str, ca: str, cert: str, key: str, timeout: float = 15.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or 443
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=ca)
        self._ctx.load_cert_chain(cert, key)

    def request(self, method: str, path: str, body: Optional[dict] = None,
                content_type: str = "application/json") -> dict:
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ctx)
        try:
            headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
            if body is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as err:
            raise KubeApiError(0, f"{method} {path} on {self.host}:{self.port}: {err}") from None
        finally:
            conn.close()
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"message": data.decode(errors="replace")}
        if resp.status >= 300:
            raise KubeApiError(resp.status, f"{method} {path}: HTTP {resp.status} {doc.get('message', '')}")
        return doc

    def version(self) -> dict:
        return self.request("GET", "/version")

    def nodes(self) -> list[dict]:
        return self.request("GET", "/api/v1/nodes").get("items", [])

    def node(self, name: str) -> dict:
        return self.request("GET", f"/api/v1/nodes/{name}")

    def create_node(self, node: dict) -> dict:
        return self.request("POST", "/api/v1/nodes", node)

    def patch_node(self, name: str, patch: dict, *, status: bool = False) -> dict:
        return self.request("PATCH", f"/api/v1/nodes/{name}" + ("/status" if status else ""), patch,
                            "application/strategic-merge-patch+json")

    def delete_node(self, name: str) -> dict:
        return self.request("DELETE", f"/api/v1/nodes/{name}")
