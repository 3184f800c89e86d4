"""The JSON Schema of a scenario file, for editors that validate YAML as people type.

Derived from the pydantic model, with the topic vocabulary of the loaded packs as an enum.
Imports no database and no chat platform.
"""

from __future__ import annotations

from typing import Any

from prepbot.content.model import Scenario

SCHEMA_ID = "https://github.com/prepbot/prepbot/blob/main/docs/scenario.schema.json"


def scenario_json_schema(topics: list[str]) -> dict[str, Any]:
    """Return the JSON Schema of one scenario file, topics limited to ``topics``."""
    schema = Scenario.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "prepbot scenario"
    schema["description"] = (
        "One interview scenario of a prepbot content pack. File name: <id>.yaml. "
        "Values starting with TODO are draft placeholders that 'prepbot content check' refuses."
    )
    follow_up = schema["properties"]["follow_ups"]
    follow_up["items"] = {"anyOf": [{"type": "string", "minLength": 1}, follow_up["items"]]}
    if topics:
        schema["properties"]["topics"]["items"] = {"type": "string", "enum": topics}
    return schema
