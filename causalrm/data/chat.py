"""Chat-format impressions: a conversation in the OpenAI / Hugging Face ``messages`` format as (context, response).

Glossary
--------
message
    One turn, ``{"role": ROLE, "content": TEXT}``. Other keys (``name``, ``tool_call_id``, ...) are ignored.
    ``content`` may also be a list of OpenAI content parts; its ``{"type": "text", "text": ...}`` parts are joined
    with newlines (any other part, e.g. an image, is rejected).
role
    One of :data:`ROLES`: ``system``, ``user``, ``assistant``, ``tool`` (compared case-insensitively, stored lower).
conversation
    A non-empty list of messages ending with an ``assistant`` message: one impression of a chat log.
response
    The content of the conversation's final (assistant) message: the text the user rated.
context
    Every message before the response (system prompt, earlier user / assistant / tool turns); may be empty.
rendered prompt
    :func:`render_prompt` of the context: the readable text flat encoders and the app see in the ``prompt`` column.
    One user message renders as its content alone, so a one-turn conversation gives the same ``prompt`` (and the
    same embedding) as the flat log ``{"prompt": ..., "response": ...}``; longer contexts render as
    ``"System: ...\\n\\nUser: ...\\n\\nAssistant: ...\\n\\nUser: ..."``. This is the one rendering of message lists
    in the package (scoring texts given as message lists uses it too).

Every function is pure. Malformed input raises :class:`MalformedConversation` (an
:class:`~causalrm.errors.InputError`) whose ``problem`` and ``todo`` let a caller name the file and row
(``causalrm.data.io`` does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from causalrm.errors import InputError

__all__ = [
    "ROLES",
    "MalformedConversation",
    "context_json",
    "conversation",
    "normalize_messages",
    "parse_context",
    "render_prompt",
    "split_conversation",
]

#: the roles of the OpenAI / Hugging Face chat format
ROLES = ("system", "user", "assistant", "tool")

_FORMAT = 'a JSON list like [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]'


class MalformedConversation(InputError):
    """A conversation that is not a usable chat impression; ``problem`` and ``todo`` are the two halves of the line."""

    def __init__(self, problem: str, todo: str) -> None:
        self.problem = problem
        self.todo = todo
        super().__init__(f"{problem}; {todo}")


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", tuple: "list", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _content_text(content: Any, where: str) -> str:
    """Text of a message's ``content``: a string, or a list of OpenAI text parts (joined with newlines)."""
    if isinstance(content, str):
        return content
    if content is None:
        raise MalformedConversation(f"{where} has no content",
                                    'give every message a "content" string (drop tool-call-only messages)')
    if isinstance(content, (list, tuple)) and content:
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise MalformedConversation(f"{where} has a content part that is not text",
                                            'keep only {"type": "text", "text": "..."} parts, or use a string')
            texts.append(part["text"])
        return "\n".join(texts)
    raise MalformedConversation(f"{where} has content of type {_kind(content)}, not text",
                                'make "content" a string')


def normalize_messages(messages: Any) -> list[dict[str, str]]:
    """``messages`` checked and reduced to ``[{"role": role, "content": text}, ...]`` (roles lower-cased).

    Preconditions (else :class:`MalformedConversation`): a non-empty list (or tuple) of objects, each with a known
    ``role`` and text ``content``.
    """
    if not isinstance(messages, (list, tuple)):
        raise MalformedConversation(f"is {_a(_kind(messages))}, not a list of messages", f"write {_FORMAT}")
    if not messages:
        raise MalformedConversation("is an empty list of messages", "give at least the assistant's response")
    out: list[dict[str, str]] = []
    for k, msg in enumerate(messages, start=1):
        where = f"message {k}"
        if not isinstance(msg, dict):
            raise MalformedConversation(f"{where} is {_a(_kind(msg))}, not a {{role, content}} object",
                                        f"write {_FORMAT}")
        role = msg.get("role")
        if not isinstance(role, str) or role.strip().lower() not in ROLES:
            shown = "missing" if role is None else repr(role)
            raise MalformedConversation(f"{where} has {'no role' if role is None else f'unknown role {shown}'}",
                                        f"use one of {', '.join(ROLES)}")
        role = role.strip().lower()
        out.append({"role": role, "content": _content_text(msg.get("content"), f"{where} ({role})")})
    return out


def split_conversation(messages: Any) -> tuple[list[dict[str, str]], str]:
    """``(context, response)`` of a conversation: the final assistant message's text and every message before it.

    Preconditions (else :class:`MalformedConversation`): :func:`normalize_messages` holds, the conversation has an
    assistant message, the last message is one (messages after the response would be silently lost), and its text is
    not blank.
    """
    msgs = normalize_messages(messages)
    if not any(m["role"] == "assistant" for m in msgs):
        raise MalformedConversation("has no assistant message",
                                    "end each conversation with the assistant's response that was rated")
    last = msgs[-1]
    if last["role"] != "assistant":
        raise MalformedConversation(f"ends with a {last['role']} message, not the assistant's response",
                                    "end each conversation with the rated assistant message (drop later turns)")
    if not last["content"].strip():
        raise MalformedConversation("has an empty final assistant message",
                                    "every row needs response text; drop rows without one")
    return msgs[:-1], last["content"]


def render_prompt(context: Sequence[dict[str, Any]] | Any) -> str:
    """The readable prompt text of a context (see the glossary): ``""`` for none, a single message's content alone,
    else ``"Role: content"`` turns separated by blank lines. A string is returned as is."""
    if isinstance(context, str):
        return context
    if isinstance(context, dict):
        return str(context.get("content", ""))
    msgs = list(context)
    if not msgs:
        return ""
    if len(msgs) == 1:
        return str(msgs[0].get("content", ""))
    return "\n\n".join(f"{str(m.get('role') or 'user').capitalize()}: {m.get('content', '')}" for m in msgs)


def context_json(context: Sequence[dict[str, str]]) -> str:
    """The context as the JSON text stored in a log's ``context`` column (``[]`` for none)."""
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in context], ensure_ascii=False)


def parse_context(value: Any) -> list[dict[str, str]]:
    """Messages of a ``context`` cell (the JSON text :func:`context_json` writes, or a list); ``None``/``""`` give
    ``[]``. Raises :class:`MalformedConversation` for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise MalformedConversation("context is not JSON", f"write {_FORMAT}") from None
    if isinstance(value, (list, tuple)) and not value:
        return []
    return normalize_messages(value)


def conversation(context: Any, response: str) -> list[dict[str, str]]:
    """The whole conversation of a log row, for a chat template: the row's ``context`` (JSON text or a list) followed
    by ``{"role": "assistant", "content": response}``; what an LLM embedder should pass to
    ``tokenizer.apply_chat_template`` instead of the rendered ``prompt``."""
    if not isinstance(response, str):
        raise MalformedConversation(f"response is {_a(_kind(response))}, not text", "give the response as a string")
    return [*parse_context(context), {"role": "assistant", "content": response}]
