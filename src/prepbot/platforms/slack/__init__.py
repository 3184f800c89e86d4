"""The Slack platform: slack-bolt adapter, Block Kit rendering, app manifest helpers.

Only modules under ``prepbot.platforms.slack`` may import ``slack_bolt`` or ``slack_sdk``; nothing
outside this package imports them, so the rest of prepbot runs without Slack installed.
"""
