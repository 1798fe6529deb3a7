"""YAML reading with libyaml's parser where PyYAML has it (several times faster than the pure-Python one)."""

from __future__ import annotations

from typing import IO, Any

import yaml

#: The safe loader backed by libyaml, or ``None`` where PyYAML was built without it.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)


def safe_load(source: str | IO[str]) -> Any:
    """``yaml.safe_load(source)``, parsed by libyaml when available.

    Both loaders build the same objects (the constructor is the same Python code); only the parser differs.
    On any error the text is parsed again by the pure-Python loader, so errors (and their messages) are
    exactly those of :func:`yaml.safe_load`.

    Parameters
    ----------
    source:
        YAML text, or a text stream.

    Returns
    -------
    Any
        The document.
    """
    text = source if isinstance(source, str) else source.read()
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)
        except Exception:
            pass  # re-parsed below, which raises PyYAML's own error
    return yaml.safe_load(text)
