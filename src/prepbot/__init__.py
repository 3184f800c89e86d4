"""prepbot: a daily AI/ML interview-prep study group for Slack and Discord channels.

The package root stays empty on purpose: importing ``prepbot`` must build nothing and pull in
no heavy dependency, so ``prepbot --help`` stays fast.
"""

__version__ = "0.1.0"
