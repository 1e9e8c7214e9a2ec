"""Anthropic Messages requests as OpenAI Chat Completions calls, and the answers back.

This is how an Anthropic client (Claude Code, the anthropic SDK) reaches an OpenAI-compatible
upstream. Anthropic upstreams get the request as sent instead: thinking signatures, cache
breakpoints and server tools do not survive this translation.

Request (:func:`chat_request`). Every top-level field falls in one of four groups; a field sent
as null counts as absent:

* mapped: ``model`` (kept; the caller rewrites it), ``max_tokens`` (required, a positive
  integer: 0, Anthropic's cache pre-warming, has no Chat counterpart) as
  ``ChatTarget.max_tokens_field``, ``system``, ``messages``, ``stop_sequences`` as ``stop`` (at
  most 4, OpenAI's limit), ``temperature`` and ``top_p`` (copied; Anthropic's 0-1 temperature
  is inside OpenAI's 0-2 range and is not rescaled), ``metadata.user_id`` as ``user`` (other
  metadata keys are ignored), ``tools``, ``tool_choice``, ``thinking``, ``output_config``, and
  ``stream`` (the ``stream`` argument decides; a streamed call asks for
  ``stream_options.include_usage``, as the gateway needs the counts);
* dropped, having no Chat counterpart: ``top_k``, and the top-level ``cache_control``
  (OpenAI-compatible upstreams cache prompts by themselves or not at all);
* ignored, having no effect on the answer: ``service_tier``, ``container``, ``inference_geo``,
  ``speed``, ``diagnostics``;
* rejected: every other field (a clear 400 beats a setting that quietly does nothing).

``system`` (a string or text blocks, joined with a blank line) becomes one leading system
message, left out when empty; a ``system`` message inside ``messages`` (which the SDK's types
allow) becomes a system message where it stands. User turns take ``text``, ``image`` (base64 as
a data URL, or a URL), ``document`` (a base64 PDF as a ``file`` part named by its ``title``, with
``.pdf`` added when missing, else ``document.pdf``; a plain-text source as a text part, its
title and context dropped) and ``tool_result``. Each tool result becomes a ``tool`` message;
OpenAI wants those right after the assistant message with the calls, so a turn's tool messages
come first, in order, and the rest of the turn follows as one user message. A tool result's
text blocks are joined with a blank line, ``is_error`` prefixes the text with ``"Error: "``, and
its images and documents, which a tool message cannot carry, open that user message after a
text part such as ``(images returned by tool <id>)``. Assistant turns take ``text`` (joined
with nothing: the blocks are pieces of one answer), ``tool_use`` (as ``tool_calls``, arguments
as compact JSON), and ``thinking`` and ``redacted_thinking``, which are dropped (Chat has no
place for them, and their signatures cannot be carried); a turn left with nothing is left out.
Refused with a 400 naming the block: images and documents in assistant turns, image sources
other than base64 and URL (Files API ids), document sources other than base64 PDF and plain
text (URL, content blocks, file ids), documents asking for ``citations``, a user turn with
an empty content array, server-tool blocks
(``server_tool_use``, ``web_search_tool_result``...), ``search_result``, ``container_upload``
and every unknown block type. ``cache_control`` and ``citations`` on any block are dropped.

Custom tools become function tools (``strict: true`` is kept; ``cache_control``,
``input_examples``, ``defer_loading``, ``allowed_callers`` and ``eager_input_streaming`` are
dropped); Anthropic's built-in tools (``web_search_20250305``, ``bash_20250124``...), which
only Anthropic runs, are refused. ``tool_choice`` auto/any/tool/none becomes
``"auto"``/``"required"``/a named function/``"none"``, and ``disable_parallel_tool_use`` becomes
``parallel_tool_calls: false``; without tools, auto and none are left out (OpenAI refuses a
``tool_choice`` without tools) and any and tool are refused.

When ``ChatTarget.reasoning_effort`` is set, ``thinking`` becomes ``reasoning_effort``: enabled
with ``budget_tokens`` under 4096 is ``"low"``, under 16384 ``"medium"``, else ``"high"``;
adaptive and between_tools are ``"medium"``; disabled sends nothing. ``output_config.effort``,
when given, wins (``xhigh`` and ``max`` are ``"high"``, the most every such upstream takes).
Without it, both are checked and dropped. ``output_config.format`` (a JSON schema) becomes a
strict ``json_schema`` ``response_format`` named ``output``.

Answer (:func:`messages_answer`): the first choice only (the request never asks for more).
Its text, then its refusal, each as a text block (left out when empty), then each tool call as
``tool_use``. Arguments that are not a JSON object are kept as ``{"_raw": "<the text>"}``, so
the client's tool rejects them visibly instead of running with no arguments. ``stop``
is ``end_turn`` (OpenAI does not say which stop sequence matched, so ``stop_sequence`` is
always null), ``length`` is ``max_tokens``, ``tool_calls`` and ``function_call`` are
``tool_use``, ``content_filter`` is ``refusal``; any other is ``end_turn``, and ``end_turn``
with tool calls (some upstreams say ``stop``) is ``tool_use``. The id is ``msg_`` and the chat
id without its ``chatcmpl-`` prefix (``msg_`` is not doubled). Reasoning text some upstreams
add (``reasoning_content``) is dropped: an Anthropic thinking block carries a signature, which
no Chat upstream makes. Usage: see :func:`messages_usage`.

Stream (:class:`ChatToMessagesStream`): Anthropic's event order, ``event:`` lines included.
``message_start`` (usage zero: the counts come at the end) and ``ping`` wait for the first
event to send, so an upstream error before any content leaves nothing sent and the caller can
fall back. Text opens a text block; each tool call (by its OpenAI index) opens a tool_use block
once its name is known, closing the block before it; a tool call's pieces after another block
began cannot be placed and fail the stream. Refusal deltas are text; reasoning deltas and
choices other than the first are dropped. ``message_delta`` (with the full usage) and
``message_stop`` follow once a finish_reason was seen and the stream ended: at ``[DONE]``, at a
usage chunk after the finish, or at the upstream's end when usage came with the finish. A
stream that ends otherwise gets its open block closed and nothing more (``complete`` stays
False: the caller reports the truncation).
"""

from __future__ import annotations

from proxyapi.translate.messages_chat.answer import messages_answer, messages_usage
from proxyapi.translate.messages_chat.request import ChatTarget, chat_request
from proxyapi.translate.messages_chat.stream import ChatToMessagesStream

__all__ = [
    "ChatTarget",
    "ChatToMessagesStream",
    "chat_request",
    "messages_answer",
    "messages_usage",
]
