"""The vLLM offline engine in this process, for a GPU node that runs the model stage itself.

Thin on purpose: vLLM does the batching (continuous batching over everything it is handed), so the
stage hands it whole partitions (``batch_size`` defaults to 512) and this module only translates
requests into vLLM 0.33's documented API: ``LLM.chat`` with one conversation per request (the model's
own chat template places the image) and per-request ``SamplingParams`` carrying
``StructuredOutputsParams(json=schema)`` (``GuidedDecodingParams`` no longer exists in 0.33).

vLLM's wheel is CUDA-only and pins its own torch, so it lives in the ``gpu`` extra and this module is
imported only when a pipeline asks for ``@vllm``; its tests are marked ``vllm`` and run where it is
installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medcurate.models.base import Generation, GenerationRequest, Generator, OutOfMemory, Sampling
from medcurate.models.http_backend import chat_messages
from medcurate.models.spec import ModelSpec


class VllmGenerator(Generator):
    backend = "vllm"

    def __init__(self, spec: ModelSpec):
        from vllm import LLM

        options = dict(spec.options)
        self.batch_size = int(options.pop("batch_size", 512))
        engine_args: dict[str, Any] = {
            "model": spec.path,
            "limit_mm_per_prompt": {"image": 1},
            "max_model_len": int(options.pop("max_model_len", 8192)),
            "max_num_seqs": int(options.pop("max_num_seqs", 128)),
            "gpu_memory_utilization": float(options.pop("gpu_memory_utilization", 0.9)),
            "seed": 0,
        }
        if "max_pixels" in options:  # the maintainers' first throughput advice for vision models
            engine_args["mm_processor_kwargs"] = {"max_pixels": int(options.pop("max_pixels"))}
        options.pop("device", None)
        options.pop("gpus_per_task", None)
        engine_args.update(options)  # anything else goes to vLLM's engine arguments as given
        self.llm = LLM(**engine_args)

    def _params(self, request: GenerationRequest, sampling: Sampling):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = StructuredOutputsParams(json=dict(request.schema)) if request.schema else None
        return SamplingParams(
            max_tokens=sampling.max_tokens,
            min_tokens=sampling.max_tokens if sampling.fixed_length else 0,
            ignore_eos=sampling.fixed_length,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            structured_outputs=structured,
        )

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[Generation]:
        import torch

        conversations = [chat_messages(request) for request in requests]
        params = [self._params(request, sampling) for request in requests]
        try:
            outputs = self.llm.chat(conversations, sampling_params=params, use_tqdm=False)
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(str(exc)) from exc
        answers = []
        for output in outputs:
            best = output.outputs[0]
            answers.append(
                Generation(
                    text=best.text,
                    prompt_tokens=len(output.prompt_token_ids or ()),
                    output_tokens=len(best.token_ids),
                    finish_reason=best.finish_reason,
                )
            )
        return answers

    def close(self) -> None:
        del self.llm
