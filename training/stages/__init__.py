"""The four Bailando training stages (``python -m training vqvae|root|gpt|actor-critic``) and rewards.

Each module defines a stage class for the shared loop (``training.trainer.train``) plus the
``add_arguments``/``run`` pair of its command.
"""
