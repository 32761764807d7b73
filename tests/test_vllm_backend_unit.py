"""vLLM backend logic that needs no engine (the engine itself is tested in the vLLM lane)."""

import pytest

from seqdistill.errors import ConfigError


def test_vllm_without_raw_logprobs_is_refused_on_the_streaming_path_too():
    """An engine too old to say which logprobs it returns: refused at temperature != 1 by stream() (the default
    path), as by generate()."""
    from seqdistill.backends import Params
    from seqdistill.backends.vllm import VLLMBackend

    be = object.__new__(VLLMBackend)
    be.raw_logprobs = False
    with pytest.raises(ConfigError, match="cannot return raw logprobs"):
        next(iter(be.stream([], Params(logprobs=5, temperature=0.6), 4)))
    with pytest.raises(ConfigError, match="cannot return raw logprobs"):
        be.generate([], Params(logprobs=5, temperature=0.6))


def test_vllm_speed_timing_ignores_the_end_of_sequence_and_stop_strings():
    """Params.ignore_eos (eval's speed timing) reaches vLLM as ignore_eos with no stop strings; never otherwise."""
    from seqdistill.backends import Params
    from seqdistill.backends.vllm import sampling_kwargs

    p = Params(max_tokens=64, stop=["\n\n"])
    assert "ignore_eos" not in sampling_kwargs(p, "a") and sampling_kwargs(p, "a")["stop"] == ["\n\n"]
    kw = sampling_kwargs(Params(max_tokens=64, stop=["\n\n"], ignore_eos=True), "a")
    assert kw["ignore_eos"] is True and kw["stop"] is None and kw["max_tokens"] == 64
