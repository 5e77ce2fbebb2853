#!/usr/bin/env python3
"""Runs ON the head host (copied there by dsinfra bootstrap), as root so it can read the API key
from the engine's 0600 env file: the key never travels on a command line.

Prints one JSON object: {"health": status, "models": [...] | null, "chat": status | null,
"error": str | null}. Standard library only (the host's python3).
"""

import argparse
import json
import urllib.error
import urllib.request


def _read_key(env_file):
    with open(env_file) as handle:
        for line in handle:
            if line.startswith("DSINFRA_API_KEY="):
                return line.split("=", 1)[1].strip()
    return ""


def _request(url, key=None, body=None, timeout=30.0):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--health-path", default="/health")
    parser.add_argument("--model", required=True)
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--openai", action="store_true")
    args = parser.parse_args()
    base = "http://127.0.0.1:%d" % args.port
    key = _read_key(args.env_file)
    result = {"health": None, "models": None, "chat": None, "error": None}
    result["health"], text = _request(base + args.health_path, key, timeout=10)
    if result["health"] != 200:
        result["error"] = text[-300:]
    elif args.openai:
        status, text = _request(base + "/v1/models", key)
        try:
            result["models"] = [m["id"] for m in json.loads(text)["data"]] if status == 200 \
                else None
        except (ValueError, KeyError, TypeError):
            result["models"] = None
        if status != 200:
            result["error"] = "GET /v1/models: %s %s" % (status, text[-300:])
        else:
            body = {"model": args.model, "max_tokens": 8,
                    "messages": [{"role": "user", "content": "Say OK."}]}
            result["chat"], text = _request(base + "/v1/chat/completions", key, body, 600)
            if result["chat"] != 200:
                result["error"] = "POST /v1/chat/completions: %s %s" % (result["chat"],
                                                                        text[-300:])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
