"""The pose VQ-VAE: parity with the official implementation (golden vectors) and the training pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.models.vqvae import DOWN_INDEX, UP_INDEX, SepVQVAE, VQVAEConfig, integrate_root
from engine.skeleton import LOWER_JOINTS, UPPER_JOINTS
from tests.engine.golden import OUR_EXTRA_BUFFERS, assert_vqvae_parity


def tiny_official_vqvae(golden_dir) -> SepVQVAE:
    """Our VQ-VAE at the golden tiny size holding the golden weights (names taken verbatim)."""
    weights = np.load(golden_dir / "tiny_official_weights.npz")
    state = {k[len("vqvae/"):]: torch.from_numpy(weights[k]) for k in weights.files if k.startswith("vqvae/")}
    model = SepVQVAE(VQVAEConfig.tiny())
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert all(k.endswith(OUR_EXTRA_BUFFERS) for k in result.missing_keys)
    model.restore_codebook_statistics()
    return model.eval()


def test_parity_with_official_on_golden_vectors(golden_dir, golden_io):
    assert_vqvae_parity(tiny_official_vqvae(golden_dir), golden_io)


def test_state_dict_names_are_the_official_names(golden_dir):
    weights = np.load(golden_dir / "tiny_official_weights.npz")
    official = {k[len("vqvae/"):]: weights[k].shape for k in weights.files if k.startswith("vqvae/")}
    ours = {k: tuple(v.shape) for k, v in SepVQVAE(VQVAEConfig.tiny()).state_dict().items()
            if not k.endswith(OUR_EXTRA_BUFFERS)}
    assert ours == official


def test_halves_use_the_skeleton_split_and_root_channels_are_ignored():
    torch.manual_seed(0)
    model = SepVQVAE(VQVAEConfig.tiny()).eval()
    for book in model.codebooks:
        book.k.normal_()
    assert sorted(UP_INDEX.tolist() + DOWN_INDEX.tolist()) == list(range(72))
    assert UP_INDEX.tolist()[:3] == [3 * UPPER_JOINTS[0] + i for i in range(3)]
    assert DOWN_INDEX.tolist()[:3] == [0, 1, 2] and LOWER_JOINTS[0] == 0
    pose = torch.randn(2, 48, 72) * 0.3
    moved = pose.clone()
    moved[..., :3] += 5.0  # root channels: zeroed before encoding
    for a, b in zip(model.encode(pose), model.encode(moved)):
        assert a.shape == (2, 6)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # changing only upper joints leaves the lower codes alone, and vice versa
    up_changed = pose.clone()
    up_changed[..., UP_INDEX] += torch.randn(2, 48, 45)
    assert torch.equal(model.encode(up_changed)[1], model.encode(pose)[1])
    assert not torch.equal(model.encode(up_changed)[0], model.encode(pose)[0])


def test_decode_replaces_lower_root_channels_with_root_velocity():
    torch.manual_seed(1)
    model = SepVQVAE(VQVAEConfig.tiny()).eval()
    for book in model.codebooks:
        book.k.normal_()
    codes = torch.randint(0, 64, (1, 4))
    with torch.no_grad():
        decoded = model.decode(codes, codes)
        z = model.vqvae_down.latent_of(codes)
        vel = model.vqvae_down.decoders_root[0](z).permute(0, 2, 1)
        lower = model.vqvae_down.decoders[0](z).permute(0, 2, 1)
    assert decoded.shape == (1, 32, 72)
    torch.testing.assert_close(decoded[..., :3], vel)
    torch.testing.assert_close(decoded[..., DOWN_INDEX[3:]], lower[..., 3:])
    no_root = SepVQVAE(VQVAEConfig.tiny(with_root_decoder=False))
    assert not any("decoders_root" in k for k in no_root.state_dict())


def test_integrate_root_cumulative_from_origin():
    decoded = np.zeros((1, 4, 72), dtype=np.float32)
    decoded[0, :, :3] = [[1, 0, 0], [0, 2, 0], [0, 0, 3], [9, 9, 9]]  # last velocity unused
    decoded[0, :, 3:6] = 0.5  # joint 1, root-relative
    world = integrate_root(decoded)
    assert isinstance(world, np.ndarray) and world.shape == (1, 4, 24, 3)
    np.testing.assert_allclose(world[0, :, 0], [[0, 0, 0], [1, 0, 0], [1, 2, 0], [1, 2, 3]])
    np.testing.assert_allclose(world[0, :, 1], world[0, :, 0] + 0.5)
    as_tensor = integrate_root(torch.from_numpy(decoded))
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), world)


# --- training pieces --------------------------------------------------------------------------------------
def small_config(**overrides) -> VQVAEConfig:
    base = dict(emb_width=8, l_bins=16, width=16, depth=2)
    base.update(overrides)
    return VQVAEConfig(**base)


def test_first_training_batch_initialises_codebook_from_encoder_outputs():
    torch.manual_seed(2)
    model = SepVQVAE(small_config()).train()
    book = model.vqvae_up.bottleneck.codebook
    assert not bool(book.initialised)
    pose = torch.randn(4, 64, 72) * 0.2  # 4 x 8 = 32 latent vectors >= 16 codes
    with torch.no_grad():
        z = model.vqvae_up.encode_latent(pose[..., UP_INDEX]).permute(0, 2, 1).reshape(-1, 8)
    torch.manual_seed(3)
    model(pose)
    assert bool(book.initialised)
    # After init the EMA step ran once: codes stay means of real encoder outputs or restarts of them.
    # Re-run the init alone to check it draws rows of z.
    fresh = SepVQVAE(small_config())
    fresh.load_state_dict(model.state_dict())
    fresh_book = fresh.vqvae_up.bottleneck.codebook
    fresh_book._initialise(z)
    rows = {tuple(r) for r in z.numpy().round(6)}
    assert all(tuple(r) in rows for r in fresh_book.k.numpy().round(6))
    torch.testing.assert_close(fresh_book.k_sum, fresh_book.k)
    assert torch.all(fresh_book.k_elem == 1)


def test_ema_update_and_dead_code_restart_match_the_rule():
    torch.manual_seed(4)
    cfg = small_config(l_bins=4, emb_width=2)
    book = SepVQVAE(cfg).vqvae_up.bottleneck.codebook.train()
    book.k.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [-3.0, 3.0]]))
    book.k_sum.copy_(book.k)
    book.k_elem.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    book.initialised.fill_(True)
    x = torch.tensor([[0.1, 0.0], [0.0, -0.1], [0.9, 1.2], [1.1, 0.8]])  # 2 near code 0, 2 near code 1
    codes = book.quantise(x)
    assert codes.tolist() == [0, 0, 1, 1]
    torch.manual_seed(5)
    book._update(x, codes)
    mu = cfg.l_mu
    expected_elem = torch.tensor([mu + 2 * (1 - mu), mu + 2 * (1 - mu), mu, mu])
    torch.testing.assert_close(book.k_elem, expected_elem)
    expected_sum0 = mu * torch.tensor([0.0, 0.0]) + (1 - mu) * (x[0] + x[1])
    torch.testing.assert_close(book.k_sum[0], expected_sum0)
    torch.testing.assert_close(book.k[0], expected_sum0 / expected_elem[0])
    # codes 2 and 3 were unused: k_elem = 0.99 < 1.0, so they restart at (noisy copies of) batch vectors
    for i in (2, 3):
        assert torch.min(torch.linalg.norm(x - book.k[i], dim=1)) < 0.01


def test_ema_statistics_stay_float32_under_bf16_autocast():
    """Under bf16 autocast the EMA step equals the float32 step, whether the encoder outputs arrive in
    float32 or (as the autocast encoder gives them) in bfloat16."""
    torch.manual_seed(10)
    reference = SepVQVAE(small_config(l_bins=8)).vqvae_up.bottleneck.codebook.train()
    reference.restore_statistics()
    x32 = torch.randn(1200, 8)  # (M, emb): 1200 vectors on 8 codes, some code gets more than 256
    x16 = x32.to(torch.bfloat16)
    codes = reference.quantise(x32)
    assert torch.bincount(codes, minlength=8).max() > 256  # counts bf16 would round
    start = {k: v.clone() for k, v in reference.state_dict().items()}

    def ema_step(x: torch.Tensor, autocast: bool) -> dict[str, torch.Tensor]:
        book = SepVQVAE(small_config(l_bins=8)).vqvae_up.bottleneck.codebook.train()
        book.load_state_dict(start)
        torch.manual_seed(11)  # the same dead-code restart draws
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            book._update(x, codes)
        return {k: v.clone() for k, v in book.state_dict().items()}

    for x in (x32, x16):
        expected = ema_step(x.float(), autocast=False)
        got = ema_step(x, autocast=True)
        for name in ("k", "k_sum", "k_elem"):
            assert got[name].dtype == torch.float32, name
            assert torch.equal(got[name], expected[name]), name


def test_eval_mode_never_changes_codebook_and_resume_is_exact():
    torch.manual_seed(6)
    model = SepVQVAE(small_config()).train()
    pose = torch.randn(2, 64, 72) * 0.2  # 16 latent vectors per half = l_bins
    model(pose)
    model(pose * 1.1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    model(pose)
    model.encode(pose)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    # a resumed copy makes the same next step as the original (EMA statistics are in the state dict)
    resumed = SepVQVAE(small_config())
    resumed.load_state_dict(state)
    model.train()
    resumed.train()
    torch.manual_seed(7)
    model(pose * 0.9)
    torch.manual_seed(7)
    resumed(pose * 0.9)
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_distributed_hooks_reduce_ema_statistics():
    torch.manual_seed(8)
    pose = torch.randn(4, 64, 72) * 0.2
    plain, hooked = SepVQVAE(small_config()), SepVQVAE(small_config())
    hooked.load_state_dict(plain.state_dict())
    calls = []

    def all_reduce(t: torch.Tensor) -> None:  # as if two ranks had seen the same batch
        calls.append("reduce")
        t.mul_(2.0)

    hooked.set_distributed(all_reduce, lambda t: calls.append("broadcast"))
    for m in (plain, hooked):
        m.train()
        torch.manual_seed(9)
        m(pose)
    assert "reduce" in calls and "broadcast" in calls
    mu = plain.config.l_mu
    up_plain, up_hooked = plain.codebooks[0], hooked.codebooks[0]
    torch.testing.assert_close(up_hooked.k_elem - mu, 2 * (up_plain.k_elem - mu))


def test_training_forward_losses_and_gradients():
    torch.manual_seed(10)
    model = SepVQVAE(small_config()).train()
    pose = torch.randn(2, 64, 72) * 0.2
    pose[..., :3] = 0
    recon, losses = model(pose)
    assert recon.shape == pose.shape
    for name in ("loss", "recon", "commit", "velocity", "acceleration"):
        assert torch.isfinite(losses[name])
    expected = 0.5 * (losses["loss_up"] + losses["loss_down"])
    torch.testing.assert_close(losses["loss"], expected)
    cfg = model.config
    up_total = (losses["recon_up"] + cfg.commit * losses["commit_up"] + cfg.vel * losses["velocity_up"]
                + cfg.acc * losses["acceleration_up"])
    torch.testing.assert_close(losses["loss_up"], up_total)
    torch.testing.assert_close(losses["recon_up"], (recon[..., UP_INDEX] - pose[..., UP_INDEX]).abs().mean())
    losses["loss"].backward()
    # straight-through: the encoder gets gradients through the quantiser; the root decoder does not train here
    first_conv = model.vqvae_up.encoders[0].level_blocks[0].model[0][0]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.vqvae_down.decoders_root.parameters())


def test_forward_root_trains_only_the_root_decoder():
    torch.manual_seed(11)
    model = SepVQVAE(small_config())
    model.train()
    model(torch.randn(2, 64, 72) * 0.2)  # initialise the codebooks
    model.eval()
    books = [b.k.clone() for b in model.codebooks]
    model.vqvae_down.decoders_root.train()
    pose = torch.randn(2, 64, 72) * 0.2
    vel = torch.randn(2, 64, 3) * 0.01
    pred, losses = model.forward_root(pose, vel)
    assert pred.shape == (2, 64, 3)
    torch.testing.assert_close(losses["velocity"], (pred - vel).abs().mean())
    losses["loss"].backward()
    for name, p in model.named_parameters():
        has_grad = p.grad is not None and p.grad.abs().sum() > 0
        assert has_grad == ("decoders_root" in name), name
    assert all(torch.equal(a, b.k) for a, b in zip(books, model.codebooks))


def test_official_size_defaults_and_parameter_count():
    with torch.device("meta"):
        model = SepVQVAE(VQVAEConfig())
    official = sum(v.numel() for k, v in model.state_dict().items() if not k.endswith(OUR_EXTRA_BUFFERS))
    assert official == 65_592_907  # the official checkpoint's parameter count (golden official_state_dict_keys.txt)
    assert VQVAEConfig().downsample == 8


def test_the_speed_term_charges_a_slower_move_not_its_direction():
    """``VQVAEConfig.speed`` (off by default, as the official loss): L1 of each joint's speed. A copy of
    the motion played at half its amplitude is charged, one moving the other way at the same speed not."""
    from engine.models.vqvae import _speed_l1

    torch.manual_seed(0)
    motion = torch.randn(2, 40, 9).cumsum(dim=1)  # (B, T, 3 joints x 3): random walks
    assert float(_speed_l1(motion, motion)) == 0.0
    assert float(_speed_l1(-motion, motion)) < 1e-5  # mirrored direction, the same speed
    steps = (motion[:, 1:] - motion[:, :-1]).reshape(2, 39, 3, 3).norm(dim=-1)
    assert float(_speed_l1(0.5 * motion, motion)) == pytest.approx(0.5 * float(steps.mean()), rel=1e-5)

    model = SepVQVAE(VQVAEConfig.tiny()).train()
    pose = torch.randn(2, 16, 72)
    with torch.no_grad():
        _, losses = model(pose)
    assert "speed" not in losses  # the default: the official loss, unchanged
    charged = SepVQVAE(VQVAEConfig.tiny(speed=4.0)).train()
    charged.load_state_dict(model.state_dict())
    with torch.no_grad():
        _, with_speed = charged(pose)
    assert float(with_speed["speed"]) > 0
    assert float(with_speed["loss"]) == pytest.approx(float(with_speed["recon"] + 0.02 * with_speed["commit"]
                                                            + with_speed["velocity"] + with_speed["acceleration"]
                                                            + 4.0 * with_speed["speed"]), rel=1e-5)
