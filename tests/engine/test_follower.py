"""The duet's follower GPT: shapes, what each output may see, the key/value cache, parameter count."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ModelError
from engine.models.follower import FollowerConfig, FollowerGPT
from engine.models.gpt import KVCache

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(config: FollowerConfig, t: int, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = t + config.lookahead
    return (torch.randint(0, config.vocab_size_up, (batch, t), generator=g),
            torch.randint(0, config.vocab_size_down, (batch, t), generator=g),
            torch.randint(0, config.n_relpos, (batch, t), generator=g),
            torch.randint(0, config.vocab_size_up, (batch, n), generator=g),
            torch.randint(0, config.vocab_size_down, (batch, n), generator=g),
            torch.randn(batch, n, config.n_music, generator=g))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FollowerGPT(FollowerConfig.tiny()).eval()


def test_shapes_and_parameter_count(model):
    config = model.config
    up, down, rel = model(*_inputs(config, 10))
    assert up.shape == (2, 10, 64) and down.shape == (2, 10, 64) and rel.shape == (2, 10, 48)
    assert config.parameter_count() == model.num_parameters()
    default = FollowerConfig()
    assert default.parameter_count() == FollowerGPT(default).num_parameters()
    with pytest.raises(ModelError, match="multiple of n_head"):
        FollowerConfig.tiny(n_embd=30, n_head=4)
    with pytest.raises(ModelError, match="look-ahead|lookahead|cover"):
        model(*_inputs(config, 10)[:3], *(x[:, :-1] for x in _inputs(config, 10)[3:]))


def test_each_output_sees_the_past_and_the_leader_ahead_only(model):
    """Output i may depend on follower codes <= i, and on the condition up to i + lookahead (the look-ahead);
    nothing later."""
    config, t, L = model.config, 12, model.config.lookahead
    inputs = list(_inputs(config, t, batch=1))
    with torch.no_grad():
        base = model(*inputs)
        for stream, j in ((0, 6), (2, 6), (3, 9), (5, 9)):  # follower up, rel; leader up, music
            changed = [x.clone() for x in inputs]
            if stream == 5:
                changed[5][0, j] += 1.0
            else:
                changed[stream][0, j] = (changed[stream][0, j] + 1) % (config.n_relpos if stream == 2 else 64)
            out = model(*changed)
            first = j if stream < 3 else j - L  # the first output that may change
            for a, b in zip(base, out):
                torch.testing.assert_close(a[:, :first], b[:, :first], rtol=0, atol=0)
                assert not torch.allclose(a[:, first], b[:, first])


def test_the_cache_gives_the_full_windows_logits(model):
    config, t, L = model.config, 9, model.config.lookahead
    up, down, rel, lu, ld, music = _inputs(config, t)
    with torch.no_grad():
        full = model(up, down, rel, lu, ld, music)
        cache = KVCache()
        parts = [model(up[:, :4], down[:, :4], rel[:, :4], lu[:, :4 + L], ld[:, :4 + L], music[:, :4 + L], cache)]
        for i in range(4, t):
            parts.append(model(up[:, i:i + 1], down[:, i:i + 1], rel[:, i:i + 1], lu[:, i:i + 1 + L],
                               ld[:, i:i + 1 + L], music[:, i:i + 1 + L], cache))
    assert cache.length == t
    for k in range(3):
        torch.testing.assert_close(torch.cat([p[k] for p in parts], dim=1), full[k], rtol=1e-5, atol=1e-5)


def test_it_learns_a_follower_that_copies_the_leader():
    """A few steps of Adam on a toy rule (the follower's next codes are the leader's, its place fixed)
    bring the loss far down: the condition reaches the heads."""
    torch.manual_seed(0)
    config = FollowerConfig.tiny(embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    model = FollowerGPT(config)
    up, down, rel, lu, ld, music = _inputs(config, 16, batch=8, seed=1)
    targets = (lu[:, :16], ld[:, :16], torch.full_like(rel, 5))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss, parts = model.loss(up, down, rel, lu, ld, music, targets=targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        first = first or float(loss.detach())
    assert set(parts) == {"up", "down", "rel"}
    assert float(loss.detach()) < 0.1 * first
