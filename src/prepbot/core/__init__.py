"""Pure rules of the product: commands, schedules, streaks, rotation, neutral events and views.

No I/O: no database, no network, no clock of its own, and no chat platform imports.
"""
