"""Code versions that follow the code: hashes of the source that determines an output.

Python sources are hashed by their syntax tree with docstrings removed, so comments, formatting and docstring
edits do not change a version while any change to what the code does (a statement, a default, a constant) does.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlops_assets.lib.settings_validation import load_settings_yaml


@dataclass(frozen=True)
class CodeFingerprint:
    """A short version string and the per-input hashes it was made from (shown to users as the 'why')."""

    version: str
    inputs: dict[str, str]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def python_source_hash(source: str) -> str:
    tree = _strip_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree, annotate_fields=True, include_attributes=False).encode()).hexdigest()


def module_source_path(module_name: str) -> Path:
    """The file of a module, found without importing it (no side effects, no heavy imports)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ModuleNotFoundError(f"Cannot locate the source of module {module_name!r} for its code version.")
    return Path(spec.origin)


def file_hash(path: Path) -> str:
    """Python files by syntax tree; YAML by parsed content (comments ignored; see `_yaml_content`); anything else by
    bytes."""
    stat = path.stat()
    # Many assets share library modules; parse each file once per content (keyed by mtime and size).
    return _file_hash(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _file_hash(path_name: str, mtime_ns: int, size: int) -> str:
    path = Path(path_name)
    data = path.read_bytes()
    if path.suffix == ".py":
        return python_source_hash(data.decode())
    if path.suffix in {".yaml", ".yml"}:
        content = _yaml_content(data)
        if content is not None:
            return hashlib.sha256(content.encode()).hexdigest()
    return hashlib.sha256(data).hexdigest()


def _yaml_content(data: bytes) -> str | None:
    """A YAML file's meaning as canonical JSON; None where it has none this can write (it does not parse, is not
    UTF-8, or holds values JSON cannot: dates, binary, keys of mixed types), and the file is hashed by its bytes.
    A broken file must not stop the code location from loading (every asset's version is computed then); whatever
    reads it reports what is wrong, when it is used."""
    try:
        text = data.decode()
        # BentoML reads bentofiles as YAML 1.1, this project reads its own files with YAML 1.2's booleans: a change
        # that means something to either reading changes the version. Where the two agree (any file without `yes`,
        # `off` and the like) the hash is the one files always had.
        content, as_settings = yaml.safe_load(text), load_settings_yaml(text)
        both = content if as_settings == content else [content, as_settings]
        return json.dumps(both, sort_keys=True)
    except (UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError):
        return None


def fingerprint(
    modules: Sequence[str], files: Mapping[str, Path] | None = None, config: Mapping[str, object] | None = None
) -> CodeFingerprint:
    """Combine module sources, extra files and config defaults into one version."""
    inputs = {name: file_hash(module_source_path(name))[:12] for name in modules}
    inputs.update({name: file_hash(path)[:12] for name, path in (files or {}).items()})
    if config is not None:
        inputs["config"] = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    combined = "\n".join(f"{name}={digest}" for name, digest in sorted(inputs.items()))
    return CodeFingerprint(hashlib.sha256(combined.encode()).hexdigest()[:16], inputs)


def derived_version(*parts: object) -> str:
    """A data version derived from input versions, a code version and config: equal inputs, equal output."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
