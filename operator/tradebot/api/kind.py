"""What a custom resource kind is, beyond its models: names, columns, categories."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

CATEGORY = "tradebot"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[PrinterColumn, ...]
    description: str

    @property
    def singular(self) -> str:
        return self.kind.lower()
