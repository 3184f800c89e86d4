"""Read-only web pages served by ``prepbot run`` beside /healthz: each group's archive.

Builds HTML from what the services and the database hold; imports no chat platform library
(neither ``slack_bolt`` nor ``discord``) and changes nothing in the database.
"""
