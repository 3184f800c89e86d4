"""The console platform: one study-group channel in the terminal, the embedded default.

Imports no Slack or Discord library.
"""
