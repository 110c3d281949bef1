"""Settings checked against pydantic models, refused in one line naming each setting, its value and what is allowed."""

from __future__ import annotations

import contextlib
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from mlops_assets.lib.errors import MLOpsError

Model = TypeVar("Model", bound=BaseModel)

# pydantic error types that mean "this key is not a setting" and "this setting is absent".
_UNKNOWN = "extra_forbidden"
_MISSING = "missing"
# Errors a validator raises with its own explanation (kept in the message).
_EXPLAINED = ("value_error", "assertion_error")


class ConfigError(MLOpsError):
    """A setting cannot be used as given: the message is one line naming the file or source, the setting, the value
    given and what is allowed."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {'; '.join(problems)}")


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(field: FieldInfo) -> str:
    """ " from 1 to 65535", " >= 1", " > 0 and <= 10" or "" from the field's bounds."""
    found: dict[str, Any] = {}
    for item in field.metadata:  # pydantic keeps each bound as an object with one attribute: Ge(ge=1), Lt(lt=5), ...
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                found[name] = getattr(item, name)
    if "ge" in found and "le" in found:
        return f" from {_number(found['ge'])} to {_number(found['le'])}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{symbol} {_number(found[name])}" for name, symbol in symbols.items() if name in found]
    return " " + " and ".join(parts) if parts else ""


def _kind(annotation: Any) -> str:
    """What a value of this type looks like, in words."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    if origin is typing.Annotated:
        return _kind(typing.get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset):
        return "a list of " + _plural(_kind(typing.get_args(annotation)[0]))
    if origin is dict or annotation is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping of " + ", ".join(annotation.model_fields)
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(annotation, "a value")


def _plural(kind: str) -> str:
    return {"text": "text", "an integer": "integers", "a number": "numbers"}.get(kind, kind)


def allowed(field: FieldInfo) -> str:
    """What a field accepts, in words: its own `allowed` note (json_schema_extra), else its type and bounds."""
    extra = field.json_schema_extra
    if isinstance(extra, Mapping) and "allowed" in extra:
        return str(extra["allowed"])
    kind = _kind(field.annotation)
    if any(getattr(item, "min_length", None) == 1 for item in field.metadata):
        kind = "non-empty text" if kind == "text" else "a non-empty " + kind.removeprefix("a ")
    return kind + _bounds(field)


def _field(model: type[BaseModel], location: tuple) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model owning the last named part of `location`, and that part's field (None where it is not a field)."""
    owner: type[BaseModel] | None = model
    field: FieldInfo | None = None
    for part in location:
        if isinstance(part, int):
            continue  # an item of a list: described by its list's field
        if owner is None or part not in owner.model_fields:
            return owner, None
        field = owner.model_fields[part]
        # An optional section (`CloudRunSettings | None`) is described by its model.
        candidates = typing.get_args(field.annotation) or (field.annotation,)
        owner = next((arg for arg in candidates if isinstance(arg, type) and issubclass(arg, BaseModel)), None)
    return owner, field


def _name(location: tuple, names: Mapping[str, str], prefix: str) -> str:
    text = ""
    for index, part in enumerate(location):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            written = names.get(part, part) if index == 0 else part
            text += f".{written}" if text else written
    return f"{prefix}.{text}" if prefix else text


def problems(
    error: ValidationError, model: type[BaseModel], names: Mapping[str, str] | None = None, prefix: str = ""
) -> list[str]:
    """One phrase per wrong setting: `setting = value: expected ...`, `setting = value: unknown setting (known:
    ...)` or `setting: missing (expected ...)`; `names` renames top-level settings (e.g. to the section they were
    written in), `prefix` is prepended to every name."""
    found: list[str] = []
    for item in error.errors():
        # pydantic adds the failing type of a Literal/union as a last part of the location; the setting is before it.
        location = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("literal[")))
        setting = _name(location, names or {}, prefix)
        owner, field = _field(model, location)
        if item["type"] == _UNKNOWN:
            known = ", ".join(owner.model_fields) if owner is not None else ""
            found.append(f"{setting} = {item['input']!r}: unknown setting (known: {known})")
            continue
        expected = allowed(field) if field is not None else item["msg"][0].lower() + item["msg"][1:]
        if item["type"] == _MISSING:
            found.append(f"{setting}: missing (expected {expected})")
        elif item["type"] in _EXPLAINED:
            reason = str(item.get("ctx", {}).get("error", item["msg"]))
            found.append(f"{setting} = {item['input']!r}: {reason} (expected {expected})")
        else:
            found.append(f"{setting} = {item['input']!r}: expected {expected}")
    return found


def validate(model: type[Model], data: Any, source: str, prefix: str = "") -> Model:
    """`data` as a `model`, or a ConfigError naming every wrong setting (`prefix` names the section they are in)."""
    if not isinstance(data, Mapping):
        setting = prefix or "the file"
        raise ConfigError(source, [f"{setting} = {data!r}: expected {_kind(model)}"])
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(source, problems(error, model, prefix=prefix)) from error


class _CoreSchemaLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: only true/false (any case) are booleans, so `yes`, `no`, `on`
    and `off` stay strings and a flag given that way is refused by the settings' types instead of guessed at."""


_CoreSchemaLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _FastCoreSchemaLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same loader on libyaml's parser: about 20x faster (0.5 ms instead of 11 ms for deployments/local.yaml), which
    counts because a run reads the environment's settings dozens of times."""


_FastCoreSchemaLoader.yaml_implicit_resolvers = _CoreSchemaLoader.yaml_implicit_resolvers


def load_settings_yaml(text: str) -> Any:
    """Parse settings YAML with YAML 1.2's booleans (see `_CoreSchemaLoader`); raises yaml.YAMLError."""
    # PyYAML's own parser reads what libyaml would read differently or refuse less helpfully: a tab between tokens
    # (`port:<TAB>3030`), which libyaml takes as a space where PyYAML refuses it, and broken YAML, whose error from
    # PyYAML quotes the line and names the character (libyaml's does neither). If PyYAML accepts a text libyaml
    # refused, its reading is the one the settings always had.
    if "\t" not in text:
        with contextlib.suppress(yaml.YAMLError):
            return yaml.load(text, Loader=_FastCoreSchemaLoader)  # noqa: S506 - a SafeLoader subclass
    return yaml.load(text, Loader=_CoreSchemaLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path, source: str | None = None) -> Any:
    """A YAML file's content ({} for an empty file), or a ConfigError naming the file (or `source`) and where the
    YAML is broken."""
    source = source or str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(source, ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(source, [f"cannot be read ({error})"]) from error
    try:
        content = load_settings_yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, [yaml_problem(error)]) from error
    return {} if content is None else content


def yaml_problem(error: yaml.YAMLError) -> str:
    """`not valid YAML (line L, column C: what the parser found)`, for a ConfigError's problem."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"not valid YAML ({where}{problem})"
