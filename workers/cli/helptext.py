"""How ``nurture --help`` (and every command's ``--help``) is drawn.

* Help texts are read as Markdown (:data:`MARKUP_MODE`). Typer's default, Rich markup,
  took the config's table names in square brackets (``[profiles]``, ``[api]``) for style
  tags and dropped them, and kept each line break of a docstring, so sentences broke
  off mid-line. Markdown joins a paragraph's lines and leaves brackets alone; a blank
  line still starts a new paragraph, and backticks mark commands.
* An on/off flag shows no type (``--json``, not ``--json <bool>``): there is no value to
  give it (:func:`hide_flag_types`).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

#: The ``rich_markup_mode`` of the root app; command groups added to it inherit it.
MARKUP_MODE = "markdown"


def hide_flag_types() -> None:
    """Leave the type column empty for flags, in every command's help (idempotent).

    Typer draws ``<bool>`` after every flag, ``--help`` included, and offers no setting
    for it: its option class's ``display_type_rich`` is wrapped instead, answering
    nothing for a flag and what it always did for an option that takes a value.
    """
    current = TyperOption.display_type_rich
    if getattr(current, "hides_flag_types", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        return current(self, ctx)

    display_type_rich.hides_flag_types = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
