"""A client of a running PONAS Studio server's REST API, for ``ponas remote``.

Only the standard library speaks HTTP here (``urllib.request``), so the command line needs
nothing beyond the core install. The server's URL and an API token (a knox token from
``POST /api/auth/token/``) are kept in a config file readable by its owner alone.

Every failure is a :class:`RemoteError` whose text is one line a user can act on: the
server's own ``{"error": ...}`` message or DRF's field errors, the address that could not be
reached, or, for a token the server refuses, the command that signs in again.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Any

from ponas import __version__
from ponas.files import atomic_write

CONFIG_ENV = "PONAS_REMOTE_CONFIG"
# Seconds a request may wait for each answer (per socket operation: a long download only needs
# data to keep coming). Generous: a server's first request imports torch, which took 40 s on a
# busy 2-core machine.
TIMEOUT_ENV, TIMEOUT_S = "PONAS_REMOTE_TIMEOUT", 120.0
CHUNK = 1 << 20


class RemoteError(Exception):
    """A failed request, as one line. ``fields`` holds DRF's field errors, if that is what the
    server answered, so a command can name its own flags instead of the API's field names."""

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}

    def text(self, labels: Mapping[str, str] | None = None) -> str:
        """The message, with each field error under ``labels[field]`` (e.g. ``--max-macs``)
        where given; errors not tied to a field (or labelled ``""``) stand alone."""
        if not self.fields:
            return str(self)
        labels = labels or {}
        parts = []
        for field, messages in self.fields.items():
            joined = " ".join(messages)
            label = labels.get(field, "" if field in ("non_field_errors", "error") else field)
            parts.append(f"{label}: {joined}" if label else joined)
        return "; ".join(parts)


class NotSignedIn(RemoteError):
    """No config file, or the server refused the stored token (401)."""


# ---- the config file ------------------------------------------------------------------------


def config_path() -> Path:
    """``$PONAS_REMOTE_CONFIG``, else ``$XDG_CONFIG_HOME/ponas/remote.json`` (``~/.config``)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "ponas" / "remote.json"


@dataclass(frozen=True)
class Session:
    """A signed-in server: its base URL, the token, and who it belongs to."""

    url: str
    token: str
    username: str = ""
    expiry: str | None = None

    def save(self, path: Path | None = None) -> Path:
        """Write the session atomically; the file is readable and writable by its owner only
        (it holds a bearer token), and so is a folder this creates for it."""
        path = path or config_path()
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        text = json.dumps(self.__dict__, indent=1) + "\n"

        # Created 0600 by os.open: a chmod after creation leaves an instant where another
        # user's open() gets a handle that reads the token once it is written.
        return atomic_write(
            path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), mode=0o600
        )

    @classmethod
    def load(cls, path: Path | None = None) -> Session:
        """The stored session; :class:`NotSignedIn` when there is none."""
        path = path or config_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotSignedIn("not signed in to a server: run `ponas remote login URL`") from None
        except (OSError, ValueError) as exc:
            raise RemoteError(
                f"{path}: not a readable ponas remote config ({exc}); "
                "run `ponas remote login URL` to write it again"
            ) from None
        if not isinstance(data, dict) or not data.get("url") or not data.get("token"):
            raise RemoteError(
                f"{path}: no url and token in it; run `ponas remote login URL` to write it again"
            )
        return cls(
            str(data["url"]),
            str(data["token"]),
            str(data.get("username") or ""),
            data.get("expiry"),
        )


def forget(path: Path | None = None) -> Session | None:
    """Remove the stored session; the one removed (None if there was none)."""
    path = path or config_path()
    try:
        session = Session.load(path)
    except NotSignedIn:
        return None
    except RemoteError:
        session = None  # unreadable: remove it all the same
    path.unlink(missing_ok=True)
    return session


def base_url(text: str) -> str:
    """The server's address as given (``http://host:8000``, optionally with a path prefix),
    without a trailing slash or ``/api``; :class:`RemoteError` unless it is an http(s) URL."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteError(
            f"{text!r} is not a server address; expected a URL such as http://127.0.0.1:8000"
        )
    path = parts.path.rstrip("/").removesuffix("/api")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# ---- HTTP -----------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are reported, not followed: urllib would replay a POST as a GET without its
    body, and a token should go only to the address the user signed in to."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _field_errors(data: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's error body (``{"field": ["reason"]}``, nested for objects) as flat field names."""
    out: dict[str, list[str]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in _field_errors(value, name).items():
                out.setdefault(field, []).extend(messages)
    elif isinstance(data, list):
        for item in data:
            for field, messages in _field_errors(item, prefix).items():
                out.setdefault(field, []).extend(messages)
    elif data is not None:
        out.setdefault(prefix or "error", []).append(str(data))
    return out


def _http_error(exc: urllib.error.HTTPError, url: str, base: str) -> RemoteError:
    """One line for an HTTP error answer (read from its JSON body when it has one)."""
    body = exc.read(65536)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    message = data.get("error") if isinstance(data, dict) else None
    if exc.code in (301, 302, 303, 307, 308):  # e.g. http:// to https:// (SECURE_SSL_REDIRECT)
        target = urllib.parse.urljoin(url, exc.headers.get("Location", ""))
        asked = url[len(base) :]
        if asked and target.endswith(asked) and target != url:
            moved = target[: -len(asked)]
            return RemoteError(
                f"{base} redirects to {moved}; sign in there: ponas remote login {moved}"
            )
        return RemoteError(f"{url} redirects to {target}; sign in at the address it redirects to")
    if exc.code == 401:
        reason = f" ({message})" if message else ""
        return NotSignedIn(
            f"{base} refused the stored token{reason}; run `ponas remote login {base}` "
            "to sign in again"
        )
    if isinstance(message, str) and len(data) == 1:
        return RemoteError(message)
    if isinstance(data, dict | list) and data:
        fields = _field_errors(data)
        return RemoteError(RemoteError("", fields).text(), fields)
    hint = " (is it a PONAS Studio server?)" if exc.code == 404 else ""
    return RemoteError(f"{url} answered {exc.code} {exc.reason}{hint}")


def _timeout_setting() -> float:
    """``$PONAS_REMOTE_TIMEOUT`` seconds, else :data:`TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise RemoteError(f"{TIMEOUT_ENV}={text!r}: expected seconds, e.g. {TIMEOUT_S:g}")
    return value


class Client:
    """Requests to one server, with a token (none for signing in)."""

    def __init__(self, url: str, token: str | None = None, timeout: float | None = None) -> None:
        self.url = base_url(url)
        self.token = token
        self.timeout = timeout or _timeout_setting()

    @classmethod
    def from_config(cls, path: Path | None = None) -> Client:
        session = Session.load(path)
        return cls(session.url, session.token)

    @contextmanager
    def _open(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Iterator[HTTPResponse]:
        """The response to ``method path`` (``path`` under the base URL, e.g. ``/api/runs/``);
        any failure as a :class:`RemoteError`."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json", "User-Agent": f"ponas/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            response = _OPENER.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, url, self.url) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError | socket.timeout):
                raise RemoteError(f"no answer from {self.url} within {self.timeout:g} s") from None
            text = getattr(reason, "strerror", None) or str(reason)
            raise RemoteError(f"could not reach {self.url} ({text})") from None
        except TimeoutError:
            raise RemoteError(f"no answer from {self.url} within {self.timeout:g} s") from None
        except (HTTPException, OSError) as exc:
            raise RemoteError(f"could not reach {self.url} ({exc or type(exc).__name__})") from None
        with response:
            yield response

    def _read(self, response: HTTPResponse, size: int = -1) -> bytes:
        """Bytes of the answer; a transfer that breaks off as a :class:`RemoteError`."""
        try:
            return response.read(size)
        except TimeoutError:
            raise RemoteError(f"{self.url} stopped answering mid-transfer") from None
        except (HTTPException, OSError) as exc:
            raise RemoteError(f"{self.url}: the answer broke off ({exc})") from None

    def json(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """A request whose answer is JSON (``None`` for an empty answer, e.g. 204)."""
        with self._open(method, path, body, query) as response:
            raw = self._read(response)
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RemoteError(
                f"{self.url}{path} answered something other than JSON "
                "(is it a PONAS Studio server?)"
            ) from None

    def text(self, path: str, **query: Any) -> str:
        with self._open("GET", path, None, query) as response:
            return self._read(response).decode("utf-8")

    def download(self, path: str, dest: Path) -> int:
        """Stream ``GET path`` into ``dest`` atomically (no half-written file on a broken
        transfer); the bytes written."""
        written = 0
        with self._open("GET", path) as response:

            def write(tmp: str) -> None:
                nonlocal written
                with open(tmp, "wb") as out:
                    while chunk := self._read(response, CHUNK):
                        out.write(chunk)
                        written += len(chunk)

            atomic_write(dest, write)
        return written

    # ---- the API's operations ---------------------------------------------------------------

    def sign_in(self, username: str, password: str) -> Session:
        """A new token for the user (``POST /api/auth/token/``), as a session to save."""
        answer = self.json("POST", "/api/auth/token/", {"username": username, "password": password})
        if not isinstance(answer, dict) or "token" not in answer:
            raise RemoteError(f"{self.url} gave no token (is it a PONAS Studio server?)")
        return Session(self.url, answer["token"], username, answer.get("expiry"))

    def runs(self, limit: int = 50, **filters: Any) -> tuple[list[dict[str, Any]], int]:
        """The newest ``limit`` runs of the user and how many there are in all."""
        page = self.json("GET", "/api/runs/", page_size=limit, **filters)
        return page["results"], page["count"]

    def run(self, run_id: int, since: str | None = None) -> dict[str, Any]:
        """A run's detail; with ``since``, only metric points stored after it."""
        return self.json("GET", f"/api/runs/{run_id}/", since=since)

    def start_run(self, preset: str, config: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = {"preset": preset, "config": config}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self.json("POST", "/api/runs/", body)

    def cancel_run(self, run_id: int) -> dict[str, Any]:
        return self.json("POST", f"/api/runs/{run_id}/cancel/")

    def table(self, run_id: int, csv: bool = False, profile: int | None = None) -> str:
        """The run's accuracy table as the server serves it: ``ponas-table/1`` JSON or CSV."""
        return self.text(
            f"/api/runs/{run_id}/table/", format="csv" if csv else "json", profile=profile
        )

    def start_deployment(self, run_id: int, **fields: Any) -> dict[str, Any]:
        body = {"run": run_id, **{k: v for k, v in fields.items() if v is not None}}
        return self.json("POST", "/api/deployments/", body)

    def deployment(self, deployment_id: int) -> dict[str, Any]:
        return self.json("GET", f"/api/deployments/{deployment_id}/")

    def download_export(self, deployment_id: int, fmt: str, dest: Path) -> int:
        return self.download(f"/api/deployments/{deployment_id}/download/{fmt}/", dest)

    def start_audit(self, run_id: int, **fields: Any) -> dict[str, Any]:
        """Start an audit of a run's table (``POST /api/runs/{id}/audits/``)."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self.json("POST", f"/api/runs/{run_id}/audits/", body)

    def audit_estimate(self, run_id: int, **fields: Any) -> dict[str, Any]:
        """What that audit would train and cost, starting nothing."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self.json("POST", f"/api/runs/{run_id}/audits/estimate/", body)

    def audit(self, run_id: int, audit_id: int) -> dict[str, Any]:
        return self.json("GET", f"/api/runs/{run_id}/audits/{audit_id}/")
