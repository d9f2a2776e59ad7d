"""The four Bailando training stages (``python -m training vqvae|root|gpt|actor-critic``), the duet's
follower (``duet``, ``duet-rl``) and the rewards.

Each module defines a stage class for the shared loop (``training.trainer.train``) plus the
``add_arguments``/``run`` pair of its command.
"""
