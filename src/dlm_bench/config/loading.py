"""YAML -> typed, validated specs: field-by-field type checks, a loader that refuses duplicate keys, and
`load_experiment` (read, apply CLI overrides, validate)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from .names import ConfigError
from .overrides import apply_overrides
from .spec import Experiment

__all__ = ["build_validated", "read_yaml", "load_experiment", "project_root"]


# --------------------------------------------------------------------------- typed building


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {int: "integer", float: "number", bool: "true/false", str: "string", type(None): "null"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]  # a scalar is a one-value axis
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(k, key_type, f"{where} key"): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "base_dir"]
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown key; allowed: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name != "base_dir":
                raise ConfigError(f"{prefix}{f.name}: missing required key")
            continue
        kwargs[f.name] = _coerce(data[f.name], hints[f.name], f"{prefix}{f.name}")
    return cls(**kwargs)


def build_validated(cls: type, data: Any, where: str = "") -> Any:
    """A config dataclass from a YAML mapping, type-checked field by field, then its own `validate()`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the file'}: expected a mapping at the top level")
    built = _build(cls, data, where)
    built.validate()
    return built


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content, refusing duplicate keys, non-UTF-8 text and invalid YAML in one line each."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); allowed: a UTF-8 YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:300]})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_experiment(path: str | Path, overrides: Optional[Mapping[str, Any]] = None,
                    base_dir: Optional[str | Path] = None) -> Experiment:
    """Read, override and validate an experiment file. Raises ConfigError."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides or {})
    exp = _build(Experiment, raw, "")
    exp = dataclasses.replace(exp, base_dir=str(Path(base_dir) if base_dir else project_root()))
    exp.validate()
    return exp


def project_root() -> Path:
    """The repository root (the folder holding src/dlm_bench/): configs, data and results live in the checkout."""
    return Path(__file__).resolve().parents[3]

