#!/usr/bin/env python3
"""Drive the official Anthropic Python SDK configured ONLY by its environment.

    ANTHROPIC_BASE_URL=http://127.0.0.1:PORT \
    ANTHROPIC_IDENTITY_TOKEN_FILE=/path/token.jwt \
    ANTHROPIC_FEDERATION_RULE_ID=fdrl_x ANTHROPIC_ORGANIZATION_ID=org \
    python sdk_env.py STEP [STEP...]

Unlike sdk_call.py this script passes no credential, no base URL and no HTTP
client to the SDK: ``anthropic.Anthropic()`` resolves everything from the
``ANTHROPIC_*`` variables it was started with (the Rust side sets exactly those
and removes every other ``ANTHROPIC_*`` variable). With the workload-identity
variables set, the SDK exchanges the identity token at
``{ANTHROPIC_BASE_URL}/v1/oauth/token`` and calls the API with the result.

Steps, run in order in one process (one client, so its token cache carries
over from step to step):
  create         messages.create
  stream         messages.stream, text collected
  rotate:PATH    replace the identity token file's content with PATH's
                 (atomically, as a projected service-account token is renewed)

Environment (besides the SDK's own): SG_PROMPT (default ``Say hello.``),
SG_MODEL (default ``claude-sonnet-4-5``), SG_MAX_TOKENS (default 256).

Prints exactly one JSON line, ``{"results": [...]}``, one entry per create or
stream step: ``{"ok": true, "step", "text", "status"}`` or ``{"ok": false,
"step", "error_class", "status", "message"}``. Exit 0 whenever the steps ran;
non-zero means the harness itself is broken.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

# No credentials profile on disk (~/.config/anthropic), nor a proxy.
os.environ["HOME"] = tempfile.mkdtemp(prefix="sg-sdk-home-")
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_name, None)

import anthropic  # noqa: E402  (after the environment is cleaned)


def fail_harness(message: str) -> None:
    print(f"sdk_env.py: {message}", file=sys.stderr)
    sys.exit(2)


def rotate(source: str) -> None:
    target = os.environ.get("ANTHROPIC_IDENTITY_TOKEN_FILE") or fail_harness(
        "rotate: needs ANTHROPIC_IDENTITY_TOKEN_FILE"
    )
    with open(source, "rb") as f:
        data = f.read()
    tmp = f"{target}.rotating"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


def run(client: anthropic.Anthropic, step: str, params: dict) -> dict:
    try:
        if step == "create":
            raw = client.messages.with_raw_response.create(**params)
            message = raw.parse()
            text = "".join(b.text for b in message.content if b.type == "text")
            return {"ok": True, "step": step, "text": text, "status": raw.status_code}
        with client.messages.stream(**params) as stream:
            status = stream.response.status_code
            text = "".join(stream.text_stream)
        return {"ok": True, "step": step, "text": text, "status": status}
    except anthropic.APIStatusError as error:
        return {
            "ok": False,
            "step": step,
            "error_class": type(error).__name__,
            "status": error.status_code,
            "message": str(error),
        }
    except Exception as error:  # noqa: BLE001  the SDK's own errors are outcomes too
        return {
            "ok": False,
            "step": step,
            "error_class": type(error).__name__,
            "status": getattr(error, "status_code", None),
            "message": str(error),
        }


def main() -> None:
    steps = sys.argv[1:]
    if not steps:
        fail_harness("usage: sdk_env.py create|stream|rotate:PATH ...")
    for step in steps:
        if step not in ("create", "stream") and not step.startswith("rotate:"):
            fail_harness(f"unknown step {step!r}")
    params = {
        "model": os.environ.get("SG_MODEL", "claude-sonnet-4-5"),
        "max_tokens": int(os.environ.get("SG_MAX_TOKENS", "256")),
        "messages": [{"role": "user", "content": os.environ.get("SG_PROMPT", "Say hello.")}],
    }
    results = []
    try:
        client = anthropic.Anthropic(max_retries=0, timeout=60)
    except Exception as error:  # noqa: BLE001
        results.append({"ok": False, "step": "client", "error_class": type(error).__name__,
                        "status": None, "message": str(error)})
        print(json.dumps({"results": results}), flush=True)
        return
    for step in steps:
        if step.startswith("rotate:"):
            rotate(step[len("rotate:"):])
            continue
        results.append(run(client, step, params))
    print(json.dumps({"results": results}, default=str), flush=True)


if __name__ == "__main__":
    main()
