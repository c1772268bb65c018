#!/usr/bin/env python3
"""Drive the official Anthropic Python SDK once, for skillgate's Rust tests.

    SG_BASE_URL=http://127.0.0.1:PORT SG_TOKEN=... python sdk_call.py create|stream|count_tokens

Environment:
  SG_BASE_URL          where the SDK sends its requests (required)
  SG_TOKEN             the credential; sent with ``auth_token=`` (``Authorization: Bearer``).
                       Unset: no credential at all.
  SG_TOKEN_AS_API_KEY  "1": pass SG_TOKEN as ``api_key=`` instead. NOTE: anthropic 2.x sends
                       an ``api_key`` as ``Authorization: Bearer`` too, not as ``x-api-key``.
  SG_TOKEN_HEADER      "x-api-key": send SG_TOKEN in an explicit ``x-api-key`` header and no
                       ``Authorization`` (what older SDKs and curl users do).
  SG_MODEL             default ``claude-sonnet-4-5``
  SG_PROMPT            the user message, default ``Say hello.``
  SG_MAX_TOKENS        default 256
  SG_SYSTEM            optional system prompt
  SG_BETAS             optional comma-separated beta names: use ``client.beta.messages``
                       (the SDK then adds ``?beta=true`` and ``anthropic-beta``)
  SG_HEADERS           optional JSON object of extra request headers
  SG_TIMEOUT           seconds, default 60
  SG_MAX_RETRIES       the SDK's max_retries, default 0 (set 2, the SDK default, to test retry behaviour)

Prints exactly one JSON line on stdout and exits 0, whether the call succeeded
(``{"ok": true, ...}``) or the SDK raised (``{"ok": false, "error_class": ...}``).
A non-zero exit means the harness itself is broken (bad arguments).

``events`` (stream mode) are the SSE event names in the order they came over the
wire, ``ping`` included (the SDK itself hides ``ping``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback

# The SDK must see only what this script gives it: no credential, base URL,
# profile, federation or custom headers from the caller's environment.
for _name in list(os.environ):
    if _name.startswith("ANTHROPIC_") and _name != "ANTHROPIC_LOG":
        del os.environ[_name]
# Nor a credentials profile on disk (~/.config/anthropic), nor a proxy.
os.environ["HOME"] = tempfile.mkdtemp(prefix="sg-sdk-home-")
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_name, None)

import anthropic  # noqa: E402  (after the environment is cleaned)
import httpx2  # noqa: E402  (the SDK's HTTP client)

MODES = ("create", "stream", "count_tokens")


class _Tee(httpx2.SyncByteStream):
    """A response body that keeps a copy of every chunk it yields."""

    def __init__(self, inner: httpx2.SyncByteStream, sink: list[bytes]) -> None:
        self._inner = inner
        self._sink = sink

    def __iter__(self):
        for chunk in self._inner:
            self._sink.append(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class RecordingTransport(httpx2.HTTPTransport):
    """The plain transport (no proxies), recording the last response's raw bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        self.chunks = []
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, self.chunks),
            extensions=response.extensions,
        )

    def sse_event_names(self) -> list[str]:
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        names = []
        for block in text.split("\n\n"):
            for line in block.split("\n"):
                if line.startswith("event:"):
                    names.append(line[len("event:") :].strip())
        return names


def fail_harness(message: str) -> None:
    print(f"sdk_call.py: {message}", file=sys.stderr)
    sys.exit(2)


def to_jsonable(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def parsed_body(error: anthropic.APIStatusError):
    body = error.body
    if isinstance(body, (dict, list, str, int, float, bool)) or body is None:
        return body
    return str(body)


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        fail_harness(f"usage: sdk_call.py {'|'.join(MODES)}")
    mode = sys.argv[1]
    base_url = os.environ.get("SG_BASE_URL") or fail_harness("SG_BASE_URL is required")
    token = os.environ.get("SG_TOKEN")
    model = os.environ.get("SG_MODEL", "claude-sonnet-4-5")
    prompt = os.environ.get("SG_PROMPT", "Say hello.")
    max_tokens = int(os.environ.get("SG_MAX_TOKENS", "256"))
    timeout = float(os.environ.get("SG_TIMEOUT", "60"))
    betas = [b for b in os.environ.get("SG_BETAS", "").split(",") if b]
    headers = json.loads(os.environ.get("SG_HEADERS", "{}"))
    if not isinstance(headers, dict):
        fail_harness("SG_HEADERS must be a JSON object")

    transport = RecordingTransport()
    client_args = {
        "base_url": base_url,
        "max_retries": int(os.environ.get("SG_MAX_RETRIES", "0")),
        "timeout": timeout,
        "http_client": anthropic.DefaultHttpxClient(transport=transport, timeout=timeout),
    }
    token_header = os.environ.get("SG_TOKEN_HEADER", "").lower()
    if token is None:
        # No credential: tell the SDK that leaving Authorization out is meant.
        headers["Authorization"] = anthropic.omit
    elif token_header == "x-api-key":
        headers["x-api-key"] = token
        headers["Authorization"] = anthropic.omit
    elif token_header:
        fail_harness(f"SG_TOKEN_HEADER must be x-api-key, got {token_header!r}")
    elif os.environ.get("SG_TOKEN_AS_API_KEY") == "1":
        client_args["api_key"] = token
    else:
        client_args["auth_token"] = token
    client_args["default_headers"] = headers
    client = anthropic.Anthropic(**client_args)

    params = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    if "SG_SYSTEM" in os.environ:
        params["system"] = os.environ["SG_SYSTEM"]
    messages = client.beta.messages if betas else client.messages
    if betas:
        params["betas"] = betas

    out: dict = {"ok": True, "mode": mode}
    try:
        if mode == "create":
            raw = messages.with_raw_response.create(**params)
            message = raw.parse()
            out.update(
                text="".join(b.text for b in message.content if b.type == "text"),
                message=to_jsonable(message),
                status=raw.status_code,
                headers=dict(raw.headers),
                request_id=message._request_id,
            )
        elif mode == "stream":
            with messages.stream(**params) as stream:
                out["status"] = stream.response.status_code
                out["headers"] = dict(stream.response.headers)
                text = "".join(stream.text_stream)
                message = stream.get_final_message()
            out.update(
                text=text,
                message=to_jsonable(message),
                events=transport.sse_event_names(),
                request_id=stream.request_id,
            )
        else:
            params.pop("max_tokens")
            raw = messages.with_raw_response.count_tokens(**params)
            result = raw.parse()
            out.update(
                input_tokens=result.input_tokens,
                message=to_jsonable(result),
                status=raw.status_code,
                headers=dict(raw.headers),
            )
    except anthropic.APIStatusError as error:
        out = {
            "ok": False,
            "mode": mode,
            "error_class": type(error).__name__,
            "status": error.status_code,
            "body": parsed_body(error),
            "headers": dict(error.response.headers),
            "request_id": error.request_id,
            "error_type": error.type,
            "api_message": error.api_message,
            "message": str(error),
        }
        if mode == "stream":
            out["events"] = transport.sse_event_names()
    except anthropic.APIConnectionError as error:
        out = {
            "ok": False,
            "mode": mode,
            "error_class": type(error).__name__,
            "status": None,
            "body": None,
            "headers": {},
            "message": str(error),
        }
        if mode == "stream":
            out["events"] = transport.sse_event_names()
    except Exception as error:  # noqa: BLE001  anything else the SDK raised is an outcome too
        out = {
            "ok": False,
            "mode": mode,
            "error_class": type(error).__name__,
            "status": None,
            "body": None,
            "headers": {},
            "message": str(error),
            "traceback": traceback.format_exc(),
        }
        if mode == "stream":
            out["events"] = transport.sse_event_names()
    print(json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
