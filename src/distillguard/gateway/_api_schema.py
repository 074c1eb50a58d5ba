"""OpenAPI path items of the model endpoints served by the pipeline (outside FastAPI routing):
OpenAI chat completions, completions and models, and Anthropic messages, each with its own error
shape. Merged into the gateway's ``/openapi.json``; schemathesis runs against them.

The request schemas describe what the gateway reads and validates; every other field is allowed
(``additionalProperties``) and passed on to the upstream unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ANTHROPIC_ERROR_SCHEMA", "OPENAI_ERROR_SCHEMA", "model_paths_schema"]

OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
"""OpenAI's error document."""

ANTHROPIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
"""Anthropic's error document."""

_SIGNED = [
    {"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
    for n in ("DistillGuard-Passport", "Signature-Input", "Signature")
]
_STATUSES = (400, 401, 403, 404, 405, 408, 413, 421, 429, 502, 503, 504)

_CONTENT = {
    "oneOf": [
        {"type": "string"},
        {"type": "null"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
            },
        },
    ]
}
_CHAT = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {
                        "type": "string",
                        "enum": ["system", "developer", "user", "assistant", "tool", "function"],
                    },
                    "content": _CONTENT,
                },
            },
        },
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object"},
        "tools": {"type": "array", "items": {"type": "object"}},
    },
}
_COMPLETION = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "prompt": {"type": "string"},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "stream": {"type": "boolean"},
    },
}
_BLOCK = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["text", "image", "tool_use", "tool_result"]},
        "text": {"type": "string"},
    },
}
_MESSAGES = {
    "type": "object",
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "enum": ["user", "assistant"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]},
                },
            },
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "stop_sequences": {"type": "array", "items": {"type": "string"}},
        "stream": {"type": "boolean"},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {"type": "object"},
    },
}


def _op(
    summary: str, body: dict[str, Any] | None, error: dict[str, Any], tag: str
) -> dict[str, Any]:
    refused = {
        "description": "Refused (the API's own error shape)",
        "content": {"application/json": {"schema": error}},
    }
    out: dict[str, Any] = {
        "tags": [tag],
        "summary": summary,
        "parameters": _SIGNED,
        "responses": {
            "200": {
                "description": "The answer (JSON, or text/event-stream when stream is true)",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **{str(s): refused for s in _STATUSES},
        },
    }
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return out


def model_paths_schema() -> dict[str, Any]:
    """The OpenAPI path items of ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``
    (OpenAI) and ``/v1/messages`` (Anthropic)."""
    openai = OPENAI_ERROR_SCHEMA
    return {
        "/v1/chat/completions": {
            "post": _op("Chat completion (OpenAI-compatible)", _CHAT, openai, "openai")
        },
        "/v1/completions": {
            "post": _op("Text completion (OpenAI-compatible)", _COMPLETION, openai, "openai")
        },
        "/v1/models": {"get": _op("Models served", None, openai, "openai")},
        "/v1/messages": {
            "post": _op(
                "Messages (Anthropic-compatible)", _MESSAGES, ANTHROPIC_ERROR_SCHEMA, "anthropic"
            )
        },
    }
