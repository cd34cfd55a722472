"""Drives a running anshin-inference server with the official `openai` Python client.

Usage: python openai_client.py BASE_URL MODEL_ID. Exits non-zero (with an assertion message) on any mismatch.
"""
import sys

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key="not-used", max_retries=0, timeout=60)
extra = {"ignore_eos": True}

ids = [m.id for m in client.models.list().data]
assert ids == [model], ids

messages = [{"role": "user", "content": "頭痛と発熱があります。"}]
chat = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, extra_body=extra)
assert chat.object == "chat.completion", chat
assert chat.choices[0].message.role == "assistant"
assert chat.choices[0].finish_reason == "length", chat.choices[0].finish_reason
assert chat.usage.completion_tokens == 8, chat.usage
text = chat.choices[0].message.content

stream = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, stream=True,
                                        stream_options={"include_usage": True}, extra_body=extra)
parts, usage, finish = [], None, None
for chunk in stream:
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
assert "".join(parts) == text, ("".join(parts), text)
assert finish == "length" and usage is not None and usage.total_tokens == usage.prompt_tokens + 8, usage

comp = client.completions.create(model=model, prompt="患者は", max_tokens=5, temperature=0, extra_body=extra)
assert comp.choices[0].finish_reason == "length" and comp.usage.completion_tokens == 5, comp
streamed = "".join(c.choices[0].text for c in client.completions.create(
    model=model, prompt="患者は", max_tokens=5, temperature=0, stream=True, extra_body=extra) if c.choices)
assert streamed == comp.choices[0].text, (streamed, comp.choices[0].text)

try:
    client.completions.create(model=model, prompt="発熱 " * 5000, max_tokens=4)
    raise AssertionError("an over-long prompt was accepted")
except openai.BadRequestError as e:
    assert "context" in str(e), e

print("openai client: models, chat, streaming chat, completions, streaming completions, 400 — OK")
