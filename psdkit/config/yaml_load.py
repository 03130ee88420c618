"""YAML for recipes: PyYAML's safe loader, reading ``1e-8`` as the number YAML 1.2 says it is.

PyYAML follows YAML 1.1, whose float pattern needs a dot (``1.0e-8``): ``eps: 1e-8`` became the string
``'1e-8'`` and failed validation with "expected a number".
"""

from __future__ import annotations

import re
from typing import Any

import yaml

FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's float syntax (exponents without a dot) that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping; a key given twice is an error naming both lines (PyYAML keeps the last silently)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {first} and {line})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
FLOAT_TAG = "tag:yaml.org,2002:float"
for _first in "-+0123456789.":
    _kept = [(tag, rx) for tag, rx in RecipeLoader.yaml_implicit_resolvers.get(_first, []) if tag != FLOAT_TAG]
    RecipeLoader.yaml_implicit_resolvers[_first] = _kept
    RecipeLoader.add_implicit_resolver(FLOAT_TAG, FLOAT, [_first])


def load(text: str) -> Any:
    """Parse ``text`` with :class:`RecipeLoader`."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
