"""OpenAI Responses API requests as Chat Completions calls, and the answers back.

This is how a Responses client (Codex CLI, the OpenAI Agents SDK, openai-python's
``client.responses``) reaches an upstream that speaks Chat Completions only; for an Anthropic
upstream the chat made here goes on through the Chat -> Anthropic adapter, so it stays plain,
portable chat. What only OpenAI has (stored state, built-in tools, encrypted reasoning) does
not cross; the gateway expands ``previous_response_id`` into ``input`` before translating.

Request (:func:`chat_request`). Every top-level field falls in one of three groups; a field
sent as null counts as absent:

* mapped: ``model`` (kept; the caller rewrites it), ``input``, ``instructions`` (a string: a
  leading system message, left out when empty), ``tools``, ``tool_choice``,
  ``parallel_tool_calls`` (left out without tools, which OpenAI requires), ``text``,
  ``max_output_tokens`` as ``ChatTarget.max_tokens_field``, ``temperature`` and ``top_p``
  (copied), ``reasoning``, ``user``, and ``stream`` (the ``stream`` argument decides; a
  streamed call asks for ``stream_options.include_usage``, as the gateway needs the counts);
* ignored, having no effect on the answer or being the gateway's business: ``store``,
  ``metadata``, ``prompt_cache_key``, ``prompt_cache_retention``, ``prompt_cache_options``,
  ``safety_identifier``, ``service_tier``, ``truncation`` ("auto" or "disabled": nothing is
  truncated), ``stream_options`` (the Responses one: ``include_obfuscation``), ``background``
  when false, ``top_logprobs`` when 0, and ``include`` when it holds only
  ``reasoning.encrypted_content`` (nothing is encrypted: reasoning comes as plain text),
  ``message.input_image.image_url`` (input items are not returned) and the values that ask
  for data of built-in tools (``file_search_call.results``, ``web_search_call.results``,
  ``web_search_call.action.sources``, ``computer_call_output.output.image_url``,
  ``code_interpreter_call.outputs``), as those tools are refused;
* refused with a 400 naming the field: ``previous_response_id`` (still present: the gateway
  did not expand it), ``conversation`` and ``prompt`` (state stored by OpenAI),
  ``background: true``, ``top_logprobs`` above 0 and ``include``
  ``message.output_text.logprobs`` (no log probabilities come back), ``max_tool_calls`` (it
  limits built-in tools), ``context_management`` (OpenAI's server-side compaction),
  ``moderation``, any other ``include`` value, and every unknown field.

``input`` is a string (one user message) or items, kept in order. Messages (``type``
"message" or none) of role user take ``input_text``, ``input_image`` (``image_url``, a URL
or a data URL; ``detail`` low and high kept, original sent as high, auto left out) and
``input_file`` (``file_data`` as a chat ``file`` part, named by ``filename`` or
``document.pdf``); a user message of one text part becomes a plain string. Images and files
by ``file_id`` or ``file_url`` (which only OpenAI can read) and ``input_audio`` are refused.
System and developer messages become system messages (text parts joined with a blank line;
any other part refused; left out when empty). Assistant messages join their ``output_text``
(and ``input_text``) and ``refusal`` parts with nothing between, the pieces of one answer;
one left empty is left out. Message ``id``, ``status`` and ``phase`` are dropped.
``function_call`` items become ``tool_calls`` (id = ``call_id``) of an assistant message:
calls that follow one another or follow assistant text join the same message, and assistant
text after calls whose outputs have not come joins that message too (after a blank line), as
chat wants the tool messages right after the message with the calls. ``custom_tool_call``
items become calls of the function that stands for the tool, arguments
``{"input": <input>}``. ``function_call_output`` and ``custom_tool_call_output`` items become
``tool`` messages (a string, or parts whose text is joined with a newline); an output of a
call no earlier item makes is refused. The images and files of tool outputs, which a tool
message cannot carry, follow those tool messages in one user message, each output's opened
by a text part such as ``(images returned by tool <call_id>)``. ``reasoning`` items are
dropped: a chat upstream takes no reasoning, and their ``encrypted_content`` only OpenAI can
read. ``item_reference``, ``compaction`` and the items of OpenAI's built-in tools
(``web_search_call``, ``computer_call``, ``shell_call``, ``mcp_*``...) are refused by type.

Tools: ``function`` tools become chat function tools (``parameters`` default to an empty
object schema; ``strict`` is kept when set; ``defer_loading``, ``allowed_callers`` and
``output_schema`` are dropped). ``custom`` (freeform) tools, such as Codex's ``apply_patch``,
become function tools of the same name taking one string, ``input``; the description says
the tool takes free text and, for a ``grammar`` format, gives the grammar (lark or regex)
for the model to follow, as no chat upstream enforces one. Namespaces and every built-in
tool (``web_search``, ``file_search``, ``computer_use_preview``, ``code_interpreter``,
``image_generation``, ``mcp``, ``local_shell``, ``shell``, ``apply_patch``...) are refused.
``tool_choice`` "auto", "none" and "required" are kept, and a named function or custom tool
(which must be in ``tools``) becomes a named function; ``allowed_tools`` and built-in tool
choices are refused. Without tools, "auto" and "none" are left out and the others refused.

``text.format`` ``json_schema`` (name, schema, strict, description) becomes a ``json_schema``
``response_format``, ``json_object`` becomes ``{"type": "json_object"}``, ``text`` sends
nothing; ``text.verbosity`` is checked and dropped (not every chat upstream takes it). With
``ChatTarget.reasoning_effort``, ``reasoning.effort`` none, minimal, low, medium and high
become ``reasoning_effort`` as they are, and xhigh and max become "high"; without it the
effort is checked and dropped. ``reasoning.summary`` (no summaries come back) and
``reasoning.context`` are dropped.

Answer (:func:`response_object`): the first choice, as output items in order: ``reasoning``
(from ``reasoning_content``, or ``reasoning`` as OpenRouter and vLLM name it) with the text
as a ``reasoning_text`` part and an empty summary; a ``message`` whose text is an
``output_text`` part and whose refusal a ``refusal`` part; then each tool call as a
``function_call`` (arguments "{}" when the upstream sent none), or as a ``custom_tool_call``
when it calls a custom tool, its ``input`` taken from ``{"input": ...}`` (the arguments' text
as it is when they are of another shape). ``length`` makes the Response "incomplete" for
``max_output_tokens``, ``content_filter`` "incomplete" for ``content_filter`` (the last item,
where the answer was cut, is "incomplete" too); any other finish is "completed". ``model`` is
the upstream's, else the request's. The Response echoes its request (:func:`echo_fields`) with
OpenAI's defaults, and ``usage`` (:func:`response_usage`) when the upstream gave it: the spec
has no null for ``usage`` or ``user``, so they are left out when unknown. Failures
(:func:`failed_response`, :func:`failure_code`) carry ``error.code`` as Codex reads it:
``context_length_exceeded`` and ``insufficient_quota``, which the live API sends though the
spec's enum lacks them, ``rate_limit_exceeded`` (the message then ends "Please try again in
Ns." when the error has a Retry-After), ``invalid_prompt`` for another refusal (4xx) and
``server_error``.

Stream (:class:`ChatToResponsesStream`, events framed by :class:`ResponseEvents`): OpenAI's
event order, ``event:`` lines and ``sequence_number`` in every event. ``response.created`` and
``response.in_progress`` wait for the first content (text, refusal, reasoning, or a tool call
with its name), so an upstream error before any content leaves nothing sent and the caller can
fall back. Reasoning and text each open an item (a message's text and refusal are parts of it;
one kind after the other closes the item before); each tool call, by its chat index, opens its
own item once its name is known, closing the open text or reasoning item, and its arguments go
to it as they come. A custom tool's ``input`` is decoded from the streamed ``{"input": "...``
as it arrives; arguments of any other shape send it whole when the call ends. Reasoning text
parts come with ``content_part`` events, as OpenAI's own gpt-oss server sends them. At the
finish every open item is closed; ``response.completed`` (or ``response.incomplete``) with the
whole Response follows at ``[DONE]``, or at the upstream's end when usage came with or after
the finish. A stream that ends otherwise sends nothing more (``complete`` stays False: the caller
ends it with :meth:`~ChatToResponsesStream.error_event`, a ``response.failed`` numbered after
what was sent, holding the items finished so far). Choices other than the first, and deltas
after the finish, are dropped.

:func:`replay_response_events` tells a whole Response again (one of ours, or OpenAI's with
summaries, reasoning text and ``encrypted_content``) as the events of its stream, one delta
per text.
"""

from __future__ import annotations

from proxyapi.translate.responses_chat.answer import (
    echo_fields,
    failed_response,
    failure_code,
    response_object,
    response_usage,
)
from proxyapi.translate.responses_chat.events import ResponseEvents, replay_response_events
from proxyapi.translate.responses_chat.ids import new_id
from proxyapi.translate.responses_chat.request import chat_request, custom_tool_names
from proxyapi.translate.responses_chat.stream import ChatToResponsesStream

__all__ = [
    "ChatToResponsesStream",
    "ResponseEvents",
    "chat_request",
    "custom_tool_names",
    "echo_fields",
    "failed_response",
    "failure_code",
    "new_id",
    "replay_response_events",
    "response_object",
    "response_usage",
]
