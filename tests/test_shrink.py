"""`seqdistill shrink`: a DistilBERT-style student built from a teacher's layers."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from seqdistill.errors import ConfigError
from seqdistill.shrink import parse_layers, shrink_model


def test_shrink_copies_chosen_layers_exactly(tiny, tmp_path):
    out = shrink_model(str(tiny["teacher"]), "every:2", tmp_path / "small")
    src = AutoModelForCausalLM.from_pretrained(tiny["teacher"]).state_dict()
    small = AutoModelForCausalLM.from_pretrained(out)
    assert small.config.num_hidden_layers == 2
    sd = small.state_dict()
    for new, old in [(0, 0), (1, 2)]:
        for suffix in ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
            assert torch.equal(sd[f"model.layers.{new}.{suffix}"], src[f"model.layers.{old}.{suffix}"])
    assert torch.equal(sd["model.embed_tokens.weight"], src["model.embed_tokens.weight"])
    assert torch.equal(sd["model.norm.weight"], src["model.norm.weight"])
    with torch.no_grad():
        logits = small(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, small.config.vocab_size) and torch.isfinite(logits).all()
    assert parse_layers("0, 3", 4) == [0, 3]
    for bad in ("0,9", "a,b", "1,1", ""):
        with pytest.raises(ConfigError):
            parse_layers(bad, 4)
    from seqdistill.errors import SeqdistillError

    with pytest.raises(SeqdistillError, match="refusing to overwrite"):
        shrink_model(str(tiny["teacher"]), "0", tmp_path / "small")
