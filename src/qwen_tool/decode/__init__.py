"""The one generation engine: evaluation, RL rollouts and the server decode through it (see `request.Decoder`)."""

from qwen_tool.decode.request import Completion, CompletionCallback, Decoder, Request, SamplingParams

__all__ = ["Completion", "CompletionCallback", "Decoder", "Request", "SamplingParams"]
