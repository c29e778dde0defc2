"""The file of ``pull-config set``, derived from the API's own models: one declaration of its terms.

Each field of :class:`~idaas_sync_exporter.api.models.UdPullConfiguration` that a file may set carries
its strict type as :class:`~idaas_sync_exporter.api.models.InFile` metadata; the file's model and the
key schema (what ``pull-config`` reads and what the simulator accepts) follow from it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from idaas_sync_exporter.api.models import InFile, UdPullConfiguration

_FILE_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


def file_model(wire: type[BaseModel]) -> type[BaseModel]:
    """The strict model of the file: the fields of ``wire`` that carry an :class:`InFile` type, by wire name."""
    fields: dict[str, Any] = {}
    for name, info in wire.model_fields.items():
        nested = _nested_model(info.annotation)
        in_file = next((item.type for item in info.metadata if isinstance(item, InFile)), None)
        if nested is not None:
            fields[name] = (file_model(nested) | None, Field(None, alias=info.alias))
        elif in_file is not None:
            fields[name] = (in_file | None, Field(None, alias=info.alias))
    model: type[BaseModel] = create_model(f"{wire.__name__}File", __config__=_FILE_CONFIG, **fields)
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in getattr(annotation, "__args__", ()) if (found := _nested_model(arg))), None)


PullConfigFile = file_model(UdPullConfiguration)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The keys of the file: wire name -> the keys of a nested mapping, or ``"value"``."""
    schema: dict[str, Any] = {}
    for info in model.model_fields.values():
        nested = _nested_model(info.annotation)
        schema[str(info.alias)] = schema_of(nested) if nested is not None else "value"
    return schema


SCHEMA: dict[str, Any] = schema_of(PullConfigFile)
