"""Budget forcing (sampling.thinking_budget): a sample that hits the budget gets budget_close and answers with
the rest of max_tokens; a sample that ends on its own is untouched; eval reports the cap-hit rate."""

import pytest

from seqdistill.backends import Completion, Params, PromptIn
from seqdistill.errors import ConfigError, SeqdistillError
from seqdistill.evaluate import run_eval
from seqdistill.generate import run_generate
from seqdistill.sampling import sample
from seqdistill.store import Store


class ScriptedBackend:
    """Prompt "long" thinks forever; prompt "short" answers at once; continuations answer "\\boxed{7}"."""
    name = "hf"
    can_continue = True  # a capability, not the name, is what sample() reads

    def __init__(self, tok):
        self.tok, self.calls = tok, []

    def generate(self, prompts, p):
        self.calls.append(([pr.id for pr in prompts], p.max_tokens, p.n))
        out = []
        for pr in prompts:
            if "#answer" in pr.id:
                ids = self.tok(" is \\boxed{5}.", add_special_tokens=False)["input_ids"][:p.max_tokens]
                out.append([Completion(self.tok.decode(ids), "stop", len(ids), len(pr.token_ids), ids)])
            elif pr.id == "closed":  # closed its thinking early, still answering when the budget is reached
                ids = self.tok("ok\n</think>\nThe answer", add_special_tokens=False)["input_ids"]
                out.append([Completion(self.tok.decode(ids), "length", len(ids), 3, ids) for _ in range(p.n)])
            elif "#forced" in pr.id:
                ids = self.tok("The answer is \\boxed{7}.", add_special_tokens=False)["input_ids"][:p.max_tokens]
                out.append([Completion(self.tok.decode(ids), "stop", len(ids), len(pr.token_ids), ids)])
            elif pr.id == "long":
                ids = (self.tok("hmm ", add_special_tokens=False)["input_ids"] * p.max_tokens)[:p.max_tokens]
                out.append([Completion(self.tok.decode(ids), "length", len(ids), 3, ids) for _ in range(p.n)])
            else:
                ids = self.tok("\\boxed{7}", add_special_tokens=False)["input_ids"]
                out.append([Completion("\\boxed{7}", "stop", len(ids), 3, ids) for _ in range(p.n)])
        return out


def test_budget_forcing_closes_thinking_and_answers_within_max_tokens(tiny):
    tok = tiny["tok"]
    be = ScriptedBackend(tok)
    prompts = [PromptIn(id=i, messages=[], token_ids=[1, 2, 3]) for i in ("long", "short")]
    long_row, short_row = sample(be, prompts, Params(n=2, max_tokens=60, thinking_budget=30))
    close = tok("\n</think>\n\n", add_special_tokens=False)["input_ids"]
    assert be.calls[0] == (["long", "short"], 30, 2)  # the thinking phase runs at the budget
    # one answer request per forced sample, with what is left of max_tokens after the closing text
    assert be.calls[1] == (["long#forced0", "long#forced1"], 60 - 30 - len(close), 1)
    for c in long_row:
        assert c.budget_forced and c.finish_reason == "stop" and c.completion_tokens <= 60
        assert c.text.split("\n</think>\n\n")[1].endswith("\\boxed{7}.")
        assert c.token_ids[30:30 + len(close)] == close and c.completion_tokens == len(c.token_ids)
    assert all(not c.budget_forced and c.text == "\\boxed{7}" for c in short_row)
    assert len(be.calls) == 2


def test_openai_backend_cannot_force_and_no_room_is_refused(tiny):
    be = type("B", (), {"name": "openai", "can_continue": False})()
    with pytest.raises(ConfigError, match="thinking_budget"):
        sample(be, [], Params(max_tokens=10, thinking_budget=5))
    with pytest.raises(ConfigError, match="leaves no answer budget"):
        sample(ScriptedBackend(tiny["tok"]), [PromptIn(id="long", messages=[], token_ids=[1])],
               Params(max_tokens=32, thinking_budget=30))


def test_generate_and_eval_record_forced_samples(make_cfg):
    # tiny random models never stop on their own: every sample hits the budget and is forced
    cfg = make_cfg(generate={"batch_size": 4, "sampling": {"n": 1, "max_tokens": 20, "thinking_budget": 8,
                                                           "temperature": 1.0}},
                   eval={"data": {"synthetic": {"n": 3, "split": "test"}, "task": "arithmetic"},
                         "models": ["teacher"], "sampling": {"n": 1, "max_tokens": 16, "thinking_budget": 6}})
    recs = list(Store(run_generate(cfg)).records())
    assert recs and all(r["budget_forced"] and "</think>" in r["completion"] for r in recs)
    assert all(r["reasoning"] and r["think_closed"] for r in recs)
    import json

    report = json.loads((run_eval(cfg) / "eval.json").read_text())
    assert report["models"]["teacher"]["budget_forced_rate"] == 1.0


def test_bad_budget_settings_name_the_key(make_cfg):
    with pytest.raises(SeqdistillError, match="generate.sampling: .*thinking_budget 20 must be below max_tokens 10"):
        make_cfg(generate={"sampling": {"max_tokens": 10, "thinking_budget": 20}})
    with pytest.raises(SeqdistillError, match="generate: .*logprobs with sampling.thinking_budget"):
        make_cfg(generate={"logprobs": 4, "sampling": {"max_tokens": 10, "thinking_budget": 5}})


def test_a_sample_that_closed_its_thinking_is_never_forced(tiny):
    """s1 caps the thinking phase only: a sample past </think> when the budget hits is continued as it is."""
    be = ScriptedBackend(tiny["tok"])
    prompts = [PromptIn(id="closed", messages=[], token_ids=[1, 2, 3], prefill="<think>\n"),
               PromptIn(id="long", messages=[], token_ids=[1, 2, 3], prefill="<think>\n")]
    closed_row, long_row = sample(be, prompts, Params(n=1, max_tokens=60, thinking_budget=30))
    (c,) = closed_row
    assert not c.budget_forced and c.text.count("</think>") == 1 and c.text.endswith("The answer is \\boxed{5}.")
    assert long_row[0].budget_forced and long_row[0].text.count("</think>") == 1
    ids = {call[0][0]: call for call in be.calls[1:]}
    close = tiny["tok"]("\n</think>\n\n", add_special_tokens=False)["input_ids"]
    assert ids["closed#answer0"][1] == 60 - 30  # the rest of max_tokens, no closing text spent
    assert ids["long#forced0"][1] == 60 - 30 - len(close)
