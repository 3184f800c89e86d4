"""The Discord platform: discord.py client, /prep application commands, embeds, invite URL.

Nothing outside ``platforms/discord`` may import ``discord``.
"""
