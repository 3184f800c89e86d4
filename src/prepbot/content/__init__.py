"""The question bank: scenario models, pack loading and validation, search, and the importer.

Nothing here imports a chat platform (``slack_bolt``, ``discord``) or the database layer.
"""
