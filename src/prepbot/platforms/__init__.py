"""Chat platforms: the protocol every platform implements, and the console, Slack and Discord.

Adapters only translate between a platform and the neutral events and views of ``core``.
"""
