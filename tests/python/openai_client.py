"""Drives `arbor serve` with the official `openai` client, as a user's program would.

Usage: openai_client.py BASE_URL API_KEY. Prints one JSON object of what came back; the Rust
test (tests/cli_model.rs) checks it. Answers under a JSON schema are validated here with the
`jsonschema` package.
"""
import json
import sys
import urllib.error
import urllib.request

import jsonschema
import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=600)
msgs = [{"role": "user", "content": "Name three colours."}]
out = {}

r = client.chat.completions.create(model="embedded", messages=msgs, max_tokens=12, temperature=0)
out["plain"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                "usage": r.usage.model_dump(), "model": r.model}

pieces, finish, usage, roles = [], None, None, 0
for chunk in client.chat.completions.create(model="embedded", messages=msgs, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage.model_dump()
    for ch in chunk.choices:
        roles += ch.delta.role == "assistant"
        if ch.delta.content:
            pieces.append(ch.delta.content)
        finish = ch.finish_reason or finish
out["stream"] = {"pieces": pieces, "text": "".join(pieces), "finish": finish, "usage": usage, "roles": roles}

out["completions"] = client.completions.create(model="embedded", prompt="Once upon a time", max_tokens=10,
                                               temperature=0).choices[0].text
out["completions_stream"] = "".join(
    c.choices[0].text for c in client.completions.create(model="embedded", prompt="Once upon a time",
                                                         max_tokens=10, temperature=0, stream=True) if c.choices)

r = client.chat.completions.create(model="embedded", messages=msgs, max_tokens=6, temperature=0.9, n=3, seed=5,
                                   logprobs=True, top_logprobs=2)
out["n"] = [{"text": c.message.content, "logprobs": len(c.logprobs.content),
             "top": len(c.logprobs.content[0].top_logprobs)} for c in r.choices]

schema = {"type": "object", "properties": {
    "colours": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 3, "maxItems": 3},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["colours", "confidence"]}
texts = []
for seed in range(4):
    r = client.chat.completions.create(model="embedded", messages=msgs, max_tokens=80, temperature=1.0, seed=seed,
                                       response_format={"type": "json_schema", "json_schema": {
                                           "name": "colours", "schema": schema, "strict": True}})
    text = r.choices[0].message.content
    jsonschema.validate(json.loads(text), schema)
    texts.append(text)
out["json_schema"] = texts
r = client.chat.completions.create(model="embedded", messages=msgs, max_tokens=60, temperature=1.0, seed=1,
                                   response_format={"type": "json_object"})
out["json_object"] = json.loads(r.choices[0].message.content)


def refused(**kw):
    args = {"model": "embedded", "messages": msgs, "max_tokens": 4, **kw}
    try:
        client.chat.completions.create(**args)
        return None
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"status": e.status_code, "param": body.get("param"), "message": e.message}


out["errors"] = {
    "max_tokens_negative": refused(max_tokens=-5),
    "max_tokens_zero": refused(max_tokens=0),
    "max_tokens_beyond_context": refused(max_tokens=10**6),
    "n_zero": refused(n=0),
    "n_too_large": refused(n=1000),
    "temperature": refused(temperature=3.5),
    "top_p": refused(top_p=1.5),
    "unknown_model": refused(model="gpt-9"),
    "malformed_messages": refused(messages=[{"role": "wizard", "content": "hi"}]),
    "prompt_beyond_context": refused(messages=[{"role": "user", "content": "word " * 9000}]),
}

req = urllib.request.Request(base + "/chat/completions", data=b'{"x": "' + b"a" * (5 << 20) + b'"}',
                             headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
try:
    urllib.request.urlopen(req)
    out["errors"]["body_too_large"] = None
except urllib.error.HTTPError as e:
    out["errors"]["body_too_large"] = {"status": e.code, "param": None,
                                       "message": json.loads(e.read())["error"]["message"]}

try:
    openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0).chat.completions.create(
        model="embedded", messages=msgs, max_tokens=2)
    out["wrong_key"] = None
except openai.AuthenticationError as e:
    out["wrong_key"] = {"status": e.status_code, "message": e.message}

print(json.dumps(out))
